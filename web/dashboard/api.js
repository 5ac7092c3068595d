// The management API as the dashboard uses it: basic auth from sessionStorage on every request,
// RabbitMQ's JSON errors ({"error", "reason"}) turned into ApiError, a 401 sent back to the login
// form, and path segments percent-encoded (the vhost "/" is %2F).

const AUTH_KEY = 'warren.dashboard.auth';
const USER_KEY = 'warren.dashboard.user';

export const session = {
  header: () => sessionStorage.getItem(AUTH_KEY),
  user: () => sessionStorage.getItem(USER_KEY) || '',
  login(user, password) {
    // btoa takes Latin-1 only: encode the credentials as UTF-8 bytes first.
    const bytes = new TextEncoder().encode(`${user}:${password}`);
    sessionStorage.setItem(AUTH_KEY, `Basic ${btoa(String.fromCharCode(...bytes))}`);
    sessionStorage.setItem(USER_KEY, user);
  },
  logout() {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason ? `${error}: ${reason}` : error);
    this.status = status;
    this.error = error;
    this.reason = reason;
  }
}

let unauthorized = () => {};
// Called with a message when the API answers 401 (the app shows the login form again).
export function onUnauthorized(fn) {
  unauthorized = fn;
}

// A tagged template for API paths: each interpolated value is one percent-encoded segment.
//   p`/queues/${vhost}/${name}/get`  ->  /queues/%2F/my%20queue/get
export function p(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

// The default exchange is named "" but addressed as amq.default in paths.
export const exchangeSegment = (name) => (name === '' ? 'amq.default' : name);
export const exchangeLabel = (name) => (name === '' || name === 'amq.default' ? '(AMQP default)' : name);

// GET (or another method with a JSON body) /api + path. Resolves to the parsed JSON, or null
// for an empty body (201/204); rejects with ApiError.
export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const init = {
    method,
    cache: 'no-store',
    // Credentials go in our own Authorization header. With 'omit', a 401 carrying
    // WWW-Authenticate (RabbitMQ and Warren send one) comes back to us instead of making Chromium
    // prompt for a password (or, headless, wait for one forever).
    credentials: 'omit',
    headers: { Authorization: session.header() || '', 'X-Requested-With': 'XMLHttpRequest', ...headers },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`api${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network_error', `the broker did not answer (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (res.ok) return data;
  const error = (data && data.error) || res.statusText || `HTTP ${res.status}`;
  const reason = (data && data.reason) || (data ? '' : text.trim().slice(0, 200));
  const err = new ApiError(res.status, error, reason);
  if (res.status === 401) unauthorized(`Not authorised (401): ${err.message}`);
  throw err;
}
