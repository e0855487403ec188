import { modules as __part1 } from "./480.index.part1.js";
export const id = 480;
export const ids = [480];
export const modules = {...__part1};
