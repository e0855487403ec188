import { modules as __part1 } from "./109.index.part1.js";
export const id = 109;
export const ids = [109];
export const modules = {...__part1};
