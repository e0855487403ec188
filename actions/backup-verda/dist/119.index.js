import { modules as __part1 } from "./119.index.part1.js";
import { modules as __part2 } from "./119.index.part2.js";
import { modules as __part3 } from "./119.index.part3.js";
import { modules as __part4 } from "./119.index.part4.js";
export const id = 119;
export const ids = [119];
export const modules = {...__part1, ...__part2, ...__part3, ...__part4};
