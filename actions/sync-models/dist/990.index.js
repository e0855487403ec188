import { modules as __part1 } from "./990.index.part1.js";
export const id = 990;
export const ids = [990];
export const modules = {...__part1};
