import { modules as __part1 } from "./413.index.part1.js";
export const id = 413;
export const ids = [413];
export const modules = {...__part1};
