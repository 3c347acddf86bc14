import { API, authHeaders } from "./api";
import { fetchTransport, SubmissionQueue } from "./saver";

export const queue = new SubmissionQueue(fetchTransport(API, () => authHeaders("POST")), localStorage);
window.addEventListener("online", () => void queue.flush());
