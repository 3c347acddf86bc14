/** What the workbench tells people to do, worded for their pointer: a mouse and keyboard ("click",
 * "press Enter") or a finger (`(pointer: coarse)`: "tap", "double-tap"). Touch users were told to
 * "click … press Enter" (issue 11). */
import type { ToolName } from "../api";

export function isTouch(): boolean {
  return typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches;
}

const MOUSE_HELP: Record<ToolName, string> = {
  contour: "Click vertices around the structure, or hold the button and trace it. Click the first vertex (or press Enter) to close.",
  polygon: "Click the polygon's corners, or hold and trace. Click the first vertex (or press Enter) to close.",
  point: "Click the centre of every object. Drag a point to move it; select and press Delete to remove it.",
  polyline: "Click along the line, or hold and trace. Press Enter or click the last vertex again to finish.",
};

const TOUCH_HELP: Record<ToolName, string> = {
  contour: "Tap vertices around the structure, or trace it with one finger. Tap the first vertex or double-tap to close. Two fingers zoom and pan.",
  polygon: "Tap the polygon's corners, or trace with one finger. Tap the first vertex or double-tap to close. Two fingers zoom and pan.",
  point: "Tap the centre of every object. Drag a point to move it; tap it, then the bin, to remove it. Two fingers zoom and pan.",
  polyline: "Tap along the line, or trace it with one finger. Double-tap the last vertex to finish. Two fingers zoom and pan.",
};

export function toolHelp(tool: ToolName, touch: boolean): string {
  return (touch ? TOUCH_HELP : MOUSE_HELP)[tool];
}

/** The status line while an outline is being drawn. */
export function drawingStatus(vertices: number, touch: boolean): string {
  return touch
    ? `Drawing: ${vertices} vertices — tap the first vertex or double-tap to close, ✓ to finish, undo to step back`
    : `Drawing: ${vertices} vertices — Enter or click the first vertex to close, Esc to cancel`;
}

/** The tour's "Draw" step. */
export function tourDrawText(tool: ToolName, touch: boolean): string {
  if (touch)
    return {
      contour: "Outline each structure: tap vertex after vertex (tap the first vertex or double-tap to close it), or trace the edge with one finger.",
      polygon: "Tap the corners of each object; tap the first vertex or double-tap to close. You can also trace with one finger.",
      point: "Tap once on the centre of every object. Drag a point to move it.",
      polyline: "Tap along the line, or trace it with one finger. Double-tap the last vertex to finish the line.",
    }[tool];
  return {
    contour: "Outline each structure: click vertex after vertex (the outline closes itself when you click the first vertex or press Enter), or hold the button down and trace the edge freehand.",
    polygon: "Click the corners of each object; click the first vertex or press Enter to close. You can also hold and trace.",
    point: "Click once on the centre of every object. Drag a point to move it.",
    polyline: "Click along the line, or hold and trace it. Press Enter or click the last vertex again to finish the line.",
  }[tool];
}

export function tourEditText(touch: boolean): string {
  return touch
    ? "Tap a shape to see its vertices: drag a vertex to move it, tap on an edge to insert one, drag inside the shape to move it all; the bin deletes what is selected."
    : "Select a shape to see its vertices: drag a vertex to move it, click on an edge to insert one, Alt+click or right-click a vertex to delete it, drag inside the shape to move it all.";
}

export function tourZoomText(touch: boolean): string {
  return touch
    ? "Pinch with two fingers to zoom, drag with two fingers to pan; the fit button shows the whole image again."
    : "Use the mouse wheel or pinch to zoom, Space+drag, the middle button or two fingers to pan, 0 to fit the image.";
}

/** The shortcuts dialog: keys and mouse gestures, or touch gestures. */
export function shortcutRows(touch: boolean): [string, string][] {
  if (touch)
    return [
      ["Tap", "add a vertex (tap the first vertex or double-tap to close)"],
      ["Drag with one finger", "freehand trace (simplified with RDP)"],
      ["Drag a vertex", "move it"],
      ["Tap an edge of the selected shape", "insert a vertex there"],
      ["Drag inside a shape", "move the whole shape"],
      ["Pinch / two-finger drag", "zoom / pan"],
      ["Undo / redo buttons", "one step back or forward"],
      ["Bin button", "delete the selected vertex or shape"],
      ["No object here", "submit the image with nothing on it"],
      ["Skip", "leave the image to others, without submitting"],
      ["Label buttons", "choose the label of new shapes (tasks with labels)"],
      ["Frame slider or thumbnails (stacks)", "move through the frames"],
    ];
  return [
    ["Click", "add a vertex (first vertex or Enter closes)"],
    ["Click + drag", "freehand trace (simplified with RDP)"],
    ["Drag a vertex", "move it"],
    ["Click an edge of the selected shape", "insert a vertex there"],
    ["Alt+click / right-click a vertex", "delete the vertex"],
    ["Drag inside a shape", "move the whole shape"],
    ["Shift+click", "start a new shape even over an existing one"],
    ["Delete / Backspace", "delete the selected vertex or shape"],
    ["Enter", "close / finish the shape being drawn"],
    ["Esc", "cancel the shape being drawn, deselect"],
    ["1 – 9", "choose the label of new shapes (tasks with labels)"],
    ["Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo one step"],
    ["Wheel, pinch, + / −", "zoom (on a stack: Ctrl+wheel)"],
    ["Wheel, PageUp / PageDown, , / . (stacks)", "previous / next frame; Home / End: first / last"],
    ["Right-drag (stacks with grey values)", "window / level: sideways the width, up and down the level"],
    ["Space+drag, middle drag, two fingers, arrows", "pan"],
    ["0 or F", "fit the image"],
    ["S", "toggle Bézier smoothing"],
    ["[ and ]", "decrease / increase the RDP tolerance"],
    ["I", "show the instructions"],
    ["E", "no object here: submit the image with nothing on it"],
    ["Shift+N", "skip: leave the image to others, without submitting"],
    ["P", "the previous image"],
    ["Ctrl+Enter / N", "save and go to the next image"],
  ];
}
