import { modules as __part1 } from "./976.index.part1.js";
export const id = 976;
export const ids = [976];
export const modules = {...__part1};
