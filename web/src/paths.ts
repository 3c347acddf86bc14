/** The API's prefix, on its own so that modules without the API client's state (and their tests) can use it. */
export const API = "/api/v1";
