import { API, getToken } from "./api";
import { fetchTransport, SubmissionQueue } from "./saver";

export const queue = new SubmissionQueue(fetchTransport(API, getToken), localStorage);
window.addEventListener("online", () => void queue.flush());
