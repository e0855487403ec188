import { modules as __part1 } from "./855.index.part1.js";
export const id = 855;
export const ids = [855];
export const modules = {...__part1};
