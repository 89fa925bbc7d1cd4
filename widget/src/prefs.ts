// The visitor's memory in first-party localStorage: the choice in force, the
// record that proves it, the policy version it answered, and a visitor id.
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

export const M: Memory = (() => {
  try {
    return JSON.parse(localStorage.getItem(K) || '{}')
  } catch (e) {
    return {}
  }
})()
M.vid = M.vid || 'v_' + Array.from(crypto.getRandomValues(new Uint8Array(16)), b => (b % 36).toString(36)).join('')

export const save = () => {
  try {
    localStorage.setItem(K, JSON.stringify(M))
  } catch (e) {} // storage off: the visitor is asked again next time
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
