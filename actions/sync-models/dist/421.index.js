import { modules as __part1 } from "./421.index.part1.js";
import { modules as __part2 } from "./421.index.part2.js";
import { modules as __part3 } from "./421.index.part3.js";
import { modules as __part4 } from "./421.index.part4.js";
import { modules as __part5 } from "./421.index.part5.js";
export const id = 421;
export const ids = [421];
export const modules = {...__part1, ...__part2, ...__part3, ...__part4, ...__part5};
