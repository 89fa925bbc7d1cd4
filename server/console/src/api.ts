// Calls to the admin API. A console user is signed in by the HttpOnly
// session cookie; every change also carries the session's CSRF token
// (X-CSRF-Token), read from /v1/admin/whoami. Someone who signs in with an
// API token instead keeps it in sessionStorage (this tab only) and sends it
// in the Authorization header. No credential is ever in a URL: downloads
// are fetched, then saved from a Blob.

const KEY = 'assent-admin-token'

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t: string) => sessionStorage.setItem(KEY, t.trim()),
  clear: () => sessionStorage.removeItem(KEY),
}

// who is signed in, as whoami answered.
export interface Who {
  kind: 'user' | 'token'
  name: string
  role: 'admin' | 'viewer'
  csrf: string
}

export const session = { csrf: '' }

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message)
  }
}

let unauthorized: (message: string) => void = () => {}

// onUnauthorized is called when the server refuses the token (401).
export const onUnauthorized = (fn: (message: string) => void) => {
  unauthorized = fn
}

// request resolves to a 2xx response; any other status rejects with the
// server's JSON error as an ApiError.
export async function request(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {}
  if (token.get()) headers.Authorization = 'Bearer ' + token.get()
  else if (method !== 'GET') headers['X-CSRF-Token'] = session.csrf
  let data: string | undefined
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    data = typeof body === 'string' ? body : JSON.stringify(body)
  }
  const r = await fetch(path, { method, headers, body: data, cache: 'no-store', credentials: 'same-origin' })
  if (r.ok) return r
  let code = 'error'
  let message = r.status + ' ' + r.statusText
  try {
    const j = await r.json()
    if (j && j.error) {
      code = j.error.code
      message = j.error.message
    }
  } catch (e) {
    // not JSON: keep the status line
  }
  if (r.status === 401) unauthorized(message)
  throw new ApiError(r.status, code, message)
}

export const getJSON = async <T>(path: string): Promise<T> => (await request('GET', path)).json()

export const sendJSON = async <T>(method: string, path: string, body: unknown): Promise<T> =>
  (await request(method, path, body)).json()

// jsonl reads a JSON Lines answer.
export async function jsonl<T>(path: string): Promise<T[]> {
  const text = await (await request('GET', path)).text()
  const out: T[] = []
  for (const line of text.split('\n')) if (line.trim()) out.push(JSON.parse(line))
  return out
}

// download fetches path with the token and saves the answer under the file
// name the server gives in Content-Disposition.
export async function download(path: string, fallback: string): Promise<string> {
  const r = await request('GET', path)
  const m = /filename="([^"]+)"/.exec(r.headers.get('Content-Disposition') || '')
  const name = m ? m[1] : fallback
  saveBlob(await r.blob(), name)
  return name
}

export function saveBlob(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob)
  const a = document.createElement('a')
  a.href = url
  a.download = name
  a.hidden = true
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60000)
}

export const q = (params: Record<string, string | number | undefined>) => {
  const u = new URLSearchParams()
  for (const k of Object.keys(params)) {
    const v = params[k]
    if (v !== undefined && v !== '') u.set(k, String(v))
  }
  return u.toString()
}
