// Calls to the Assent server that served this script. The base is the origin
// of the script's own src, read synchronously while the script is current.
import { C } from './config'

const me = (document.currentScript ||
  document.querySelector('script[src*="/w/' + C.site + '.js"]')) as HTMLScriptElement | null
const base = me && me.src ? new URL(me.src).origin : ''
// Under a CSP with a script nonce, scripts the widget activates carry the
// nonce of its own tag (read from the property: browsers hide the attribute).
export const nonce = (me && me.nonce) || ''
// The demo page picks a country; the server honours it only in demo mode.
const demo = me && me.getAttribute('data-demo-country')

// call resolves to [status, JSON body]; it rejects on a network error or a
// body that is not JSON.
export const call = (path: string, body?: object | 0, query = '') =>
  fetch(
    base + '/v1/sites/' + encodeURIComponent(C.site) + path + '?' + query + (demo ? '&demo_country=' + encodeURIComponent(demo) : ''),
    body ? { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } : {},
  ).then(r => r.json().then((j: any): [number, any] => [r.status, j]))
