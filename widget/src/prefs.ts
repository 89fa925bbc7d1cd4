// The visitor's memory: the choice in force, the record that proves it, the
// policy version it answered, and a visitor id. It lives in first-party
// localStorage; with the site's cookie_domain, the choice also goes into a
// first-party cookie on that domain, so every subdomain shares it (the
// receipt stays in the localStorage of the host where it was made).
import { C, Choices } from './config'

export interface Memory {
  vid: string // random visitor id, kept across choices so records link up
  ch?: Choices // the choice in force; absent means "ask"
  id?: string // record id
  at?: string // recorded_at (server time)
  rg?: string // regime the server decided
  v?: string // policy version the choice answered
  rc?: string // receipt (compact JWS)
  su?: number // 1 signup dismissed, 2 signed up: no more automatic popups
}

const K = 'assent:' + C.site
const CK = 'assent_' + C.site + '='
const domain = C.cookie_domain

// cookie reads the shared memory; the stub (stub.ts) reads it the same way.
const cookie = () => {
  const c = domain && document.cookie.split('; ').find(kv => kv.indexOf(CK) == 0)
  return c ? JSON.parse(decodeURIComponent(c.slice(CK.length))) : {}
}

export const M: Memory = (() => {
  try {
    const m = JSON.parse(localStorage.getItem(K) || '{}'),
      c = cookie()
    if (c.id != m.id) delete m.rc
    return Object.assign(m, c)
  } catch (e) {
    return {}
  }
})()
M.vid = M.vid || 'v_' + Array.from(crypto.getRandomValues(new Uint8Array(16)), b => (b % 36).toString(36)).join('')

// The cookie outlives any expiry setting (browsers cap it at 400 days);
// fresh() decides whether the choice still holds.
export const save = () => {
  try {
    localStorage.setItem(K, JSON.stringify(M))
  } catch (e) {} // storage off: the visitor is asked again next time
  if (domain) {
    document.cookie =
      CK + encodeURIComponent(JSON.stringify(M, (k, v) => (k == 'rc' ? void 0 : v))) + ';domain=' + domain + ';path=/;max-age=34560000;samesite=lax' + (location.protocol == 'https:' ? ';secure' : '')
  }
}

// A choice lapses deny_days after a refusal and grant_days after any consent,
// and when the site's policy version changes. The version is checked twice:
// against the config in the (cacheable) script at once, and against the
// decision, which is never cached, when it arrives.
const ex = C.expiry || {}
export const fresh = (version: string) =>
  !!M.ch &&
  M.v == version &&
  Date.now() < Date.parse(M.at || '') + 864e5 * (Object.keys(M.ch).some(k => M.ch![k]) ? ex.grant_days || 365 : ex.deny_days || 182)

// clearCookies deletes the first-party cookies of every refused purpose:
// for each matching name, host-only and on the page's host and each parent
// domain (which covers cookie_domain and the usual ".example.com" cookies of
// analytics tags). HttpOnly cookies are out of a page's reach.
export const clearCookies = (granted: (id: string) => boolean) => {
  const names: string[] = []
  C.purposes.forEach(p => granted(p.id) || names.push(...(p.cookies || [])))
  names.length &&
    document.cookie.split('; ').forEach(kv => {
      const n = kv.split('=')[0]
      let d = location.hostname
      if (!names.some(p => (p.slice(-1) == '*' ? n.indexOf(p.slice(0, -1)) == 0 : n == p))) return
      document.cookie = n + '=;path=/;max-age=0'
      while (d.indexOf('.') > 0) (document.cookie = n + '=;path=/;max-age=0;domain=' + d), (d = d.slice(d.indexOf('.') + 1))
    })
}
