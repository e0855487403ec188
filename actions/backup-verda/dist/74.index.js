import { modules as __part1 } from "./74.index.part1.js";
export const id = 74;
export const ids = [74];
export const modules = {...__part1};
