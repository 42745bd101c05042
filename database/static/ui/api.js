// The candidate API as the page sees it. Reads go without a token (the API's reads are open unless
// PROTECT_READS is set, and then the token typed into the page is sent); writes always send it.

// The API may sit under a path prefix behind a proxy: everything before /ui is that prefix.
const BASE = location.pathname.replace(/\/ui\/?$/, '');

export class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
  }
}

export function token() {
  return localStorage.getItem('apiToken') || '';
}

export function setToken(value) {
  localStorage.setItem('apiToken', value);
}

export function actor() {
  return localStorage.getItem('actor') || '';
}

export function setActor(value) {
  localStorage.setItem('actor', value);
}

function headers(extra = {}) {
  const t = token();
  return t ? {...extra, Authorization: `Bearer ${t}`} : extra;
}

async function answer(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail ?? body);
  } catch (_) { /* not JSON: keep the status text */ }
  throw new ApiError(response.status, detail);
}

export async function get(path) {
  return answer(await fetch(BASE + path, {headers: headers(), cache: 'no-store'}));
}

// A read that may legitimately be absent (no baseline yet, an older API without steering): null on 404.
export async function maybe(path) {
  try {
    return await get(path);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

export async function post(path, body) {
  const init = {method: 'POST', headers: headers({'Content-Type': 'application/json'}), body: JSON.stringify(body)};
  return answer(await fetch(BASE + path, init));
}

// Every page of a paged listing ({data, count}).
export async function all(path, pageSize) {
  const join = path.includes('?') ? '&' : '?';
  const rows = [];
  for (;;) {
    const page = await get(`${path}${join}skip=${rows.length}&limit=${pageSize}`);
    rows.push(...page.data);
    if (!page.data.length || rows.length >= page.count) return rows;
  }
}
