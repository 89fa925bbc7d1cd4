// The server's decision for this visitor: regime, policy version, locale and
// the texts in that locale (the bundle carries no texts).
import { call } from './api'

export interface Decision {
  regime: string
  country: string
  source: string
  policy_version: string
  locale: string
  texts: any
}

// Empty until loaded: D.regime is the "loaded" flag.
export let D = { texts: {} } as Decision

const lang = document.documentElement.lang || (navigator.languages || [])[0] || navigator.language || ''

export const decide = () =>
  call('/decision', 0, 'lang=' + encodeURIComponent(lang)).then(([s, j]) => {
    if (s != 200) throw s
    D = j
    D.texts = D.texts || {}
  })

// Unknown regimes get the stricter experience.
export const optIn = () => D.regime != 'notice'

// tt('signup', 'title') reads a text, or '' when the site and the built-in
// texts both lack it.
export const tt = (...k: string[]): string => {
  const s = k.reduce((o: any, x) => o && o[x], D.texts)
  return typeof s == 'string' ? s : ''
}
export const label = (id: string) => tt('purposes', id, 'label') || id
