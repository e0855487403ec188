import { modules as __part1 } from "./185.index.part1.js";
export const id = 185;
export const ids = [185];
export const modules = {...__part1};
