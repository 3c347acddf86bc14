export * from "./types";
export * from "./rdp";
export * from "./bezier";
export * from "./hittest";
export * from "./raster";
