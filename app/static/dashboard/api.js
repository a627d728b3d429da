// Queries and mutations: HTTP POST /graphql on this origin, the token in the Authorization
// header. A refusal becomes an ApiError carrying the API's message and code.

export class ApiError extends Error {
  constructor(message, code, errors = []) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.errors = errors;
  }

  get unauthenticated() {
    return this.code === "UNAUTHENTICATED";
  }
}

export const NETWORK_ERROR = "NETWORK_ERROR";

/** The `errors` of a GraphQL answer as one ApiError (the first one's code). */
export function errorOf(errors) {
  const messages = errors.map((error) => error?.message || "Unknown error");
  const code = errors[0]?.extensions?.code || "UNKNOWN";
  return new ApiError(messages.join(" "), code, errors);
}

export function createApi(token, endpoint = "/graphql") {
  return async function request(query, variables = {}) {
    let response;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          Authorization: `Bearer ${token}`,
        },
        body: JSON.stringify({ query, variables }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch {
      throw new ApiError("The server cannot be reached.", NETWORK_ERROR);
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`The server answered HTTP ${response.status}.`, `HTTP_${response.status}`);
    }
    if (Array.isArray(body.errors) && body.errors.length) throw errorOf(body.errors);
    if (!body.data) throw new ApiError(`The server answered HTTP ${response.status}.`, "UNKNOWN");
    return body.data;
  };
}
