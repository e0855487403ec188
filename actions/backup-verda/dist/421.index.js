import { modules as __part1 } from "./421.index.part1.js";
export const id = 421;
export const ids = [421];
export const modules = {...__part1};
