// The site editor's form: it reads a site config into fields, checks each
// field as it is typed (in words a person understands), and writes the
// fields back into a config, keeping every key the form does not show.
import { $, h } from './dom'
import { Site } from './types'

export const consentTypes = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization',
  'functionality_storage', 'personalization_storage', 'security_storage']

// Built-in texts per language, and the default opt-in countries, from the server.
export const builtin = { texts: {} as Record<string, TextTree>, optIn: [] as string[] }

export interface TextTree {
  [k: string]: string | TextTree
}

interface PurposeRow {
  id: string
  required?: boolean
  signup?: boolean
  required_for_signup?: boolean
  consent_mode?: string[]
  cookies?: string[]
  [k: string]: unknown
}

// The first-layer texts the form edits, with their labels.
const textFields: [string, string][] = [
  ['title', 'Title'],
  ['description', 'Text (opt-in)'],
  ['accept_all', 'Accept button'],
  ['reject_all', 'Reject button'],
  ['settings', 'Settings button'],
  ['notice', 'Text (notice)'],
  ['ok', 'OK button (notice)'],
  ['optout', 'Opt-out button (notice)'],
]

let base: Site | null = null // the config being edited: keys the form does not show stay as they are
let purposes: PurposeRow[] = []
let texts: Record<string, TextTree> = {}
let changed: () => void = () => {}

export const onChange = (fn: () => void) => {
  changed = fn
}

const val = (id: string) => $<HTMLInputElement>(id).value
const setVal = (id: string, v: string | number) => {
  $<HTMLInputElement>(id).value = String(v)
}
const checked = (id: string) => $<HTMLInputElement>(id).checked

export const lang = () => val('sf-lang') || 'en'

function err(id: string, text: string) {
  const el = $(id + '-err')
  el.textContent = text
  const input = document.getElementById(id)
  if (input) {
    if (text) input.setAttribute('aria-invalid', 'true')
    else input.removeAttribute('aria-invalid')
  }
}

// clearErrors empties every message beside a field.
export function clearErrors() {
  for (const el of Array.from(document.querySelectorAll<HTMLElement>('#site-form .err'))) el.textContent = ''
  for (const el of Array.from(document.querySelectorAll('#site-form [aria-invalid]'))) el.removeAttribute('aria-invalid')
}

const reID = /^[a-z0-9][a-z0-9_-]{0,62}$/

// originProblem says what is wrong with one origin line, or ''.
export function originProblem(o: string): string {
  const m = /^(https?):\/\/(\*\.)?([a-z0-9.-]+)(:\d{1,5})?$/i.exec(o)
  if (!m) return `“${o}” is not a web address like https://shop.example (scheme and host only, no path)`
  if (m[2] && m[1] !== 'https') return `“${o}”: a wildcard is allowed over https only`
  if (m[2] && m[3].indexOf('.') < 0) return `“${o}”: a wildcard needs a domain with a dot, like *.shop.example`
  return ''
}

const lines = (s: string) => s.split(/\n/).map(x => x.trim()).filter(Boolean)
const codes = (s: string) => s.split(/[\s,;]+/).map(x => x.trim().toUpperCase()).filter(Boolean)

function countryNames(list: string[]) {
  let names: Intl.DisplayNames | null = null
  try {
    names = new Intl.DisplayNames(['en'], { type: 'region' })
  } catch (e) {
    names = null
  }
  return list.map(c => (names ? names.of(c) || c : c)).join(', ')
}

// check validates every field and shows the problems; true if none.
export function check(): boolean {
  let ok = true
  const bad = (id: string, text: string) => {
    err(id, text)
    if (text) ok = false
  }
  bad('sf-id', reID.test(val('sf-id')) ? '' : 'Use 1 to 63 lower-case letters, digits, “-” or “_”, starting with a letter or digit.')
  bad('sf-name', val('sf-name').length > 200 ? 'At most 200 characters.' : '')
  const os = lines(val('sf-origins'))
  bad('sf-origins', os.map(originProblem).filter(Boolean).join(' ') || (os.length ? '' : 'List at least one address, or no page can record a choice.'))
  const ids = purposes.map(p => p.id)
  const pp: string[] = []
  purposes.forEach((p, i) => {
    if (!reID.test(p.id)) pp.push(`Purpose ${i + 1}: the id must be lower-case letters, digits, “-” or “_”.`)
    else if (ids.indexOf(p.id) !== i) pp.push(`Purpose ${i + 1}: “${p.id}” appears twice.`)
  })
  if (!purposes.length) pp.push('A site needs at least one purpose.')
  bad('sf-purposes', pp.join(' '))
  const after = val('sf-after')
  bad('sf-after', after === '' || /^\d+$/.test(after) ? '' : 'A whole number of seconds, 0 or more.')
  const ret = val('sf-retention')
  bad('sf-retention', ret === '' || /^\d+$/.test(ret) ? '' : 'A whole number of days, 0 or more (0 keeps records for ever).')
  const cs = codes(val('sf-countries'))
  const wrong = cs.filter(c => !/^[A-Z]{2}$/.test(c))
  bad('sf-countries', wrong.length ? 'Not two-letter country codes: ' + wrong.join(', ') + '.' : '')
  $('sf-countries-help').textContent = cs.length ? 'Opt-in for: ' + countryNames(cs.filter(c => /^[A-Z]{2}$/.test(c))) + '.' : 'Empty: the default list.'
  const brand = val('sf-brand')
  const ratio = contrast(brand, '#ffffff')
  $('sf-brand-err').textContent = ratio >= 4.5
    ? `White text on it has a contrast of ${ratio.toFixed(1)}:1 — readable (at least 4.5:1 is needed).`
    : `White text on it has a contrast of only ${ratio.toFixed(1)}:1; at least 4.5:1 is needed for readable buttons. Choose a darker colour.`
  return ok
}

// contrast is the WCAG contrast ratio of two #rrggbb colours.
export function contrast(a: string, b: string): number {
  const lum = (hex: string) => {
    const n = parseInt(hex.slice(1), 16)
    const c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(v => {
      const s = v / 255
      return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4)
    })
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
  }
  if (!/^#[0-9a-f]{6}$/i.test(a) || !/^#[0-9a-f]{6}$/i.test(b)) return 21
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p)
  return (x + 0.05) / (y + 0.05)
}

// builtinText is the built-in text of a key path in a language (English if
// the language has none).
export function builtinText(language: string, path: string[]): string {
  for (const l of [language, language.split('-')[0], 'en']) {
    let node: string | TextTree | undefined = builtin.texts[l]
    for (const k of path) node = node && typeof node === 'object' ? node[k] : undefined
    if (typeof node === 'string') return node
  }
  return ''
}

// siteText is the site's own text of a key path in a language, or ''.
function siteText(language: string, path: string[]): string {
  let node: string | TextTree | undefined = texts[language]
  for (const k of path) node = node && typeof node === 'object' ? node[k] : undefined
  return typeof node === 'string' ? node : ''
}

function setSiteText(language: string, path: string[], v: string) {
  const tree = (texts[language] = texts[language] || {})
  let node: TextTree = tree
  for (const k of path.slice(0, -1)) {
    if (typeof node[k] !== 'object') node[k] = {}
    node = node[k] as TextTree
  }
  const last = path[path.length - 1]
  if (v) node[last] = v
  else delete node[last]
}

// shownText is what a visitor reads: the site's text, else the built-in one.
export const shownText = (path: string[]) => siteText(lang(), path) || builtinText(lang(), path)

function renderTexts() {
  const l = lang()
  const box = $('sf-texts')
  box.replaceChildren()
  const field = (path: string[], label: string, long: boolean) => {
    const id = 'sft-' + path.join('-')
    const input = long ? h('textarea', { id, rows: 3 }) : h('input', { id, autocomplete: 'off' })
    input.value = siteText(l, path)
    input.placeholder = builtinText(l, path)
    input.addEventListener('input', () => {
      setSiteText(l, path, input.value.trim())
      changed()
    })
    box.append(h('div', { class: 'field' + (long ? ' wide' : '') }, h('label', { for: id }, label), input))
  }
  for (const [k, label] of textFields) field([k], label, k === 'description' || k === 'notice')
  for (const p of purposes) {
    if (!reID.test(p.id)) continue
    field(['purposes', p.id, 'label'], `Purpose “${p.id}”: name`, false)
    field(['purposes', p.id, 'description'], `Purpose “${p.id}”: description`, true)
  }
}

function renderPurposes() {
  const box = $('sf-purposes')
  box.replaceChildren()
  purposes.forEach((p, i) => {
    const n = i + 1
    const pre = 'sfp-' + i
    const idInput = h('input', { id: pre + '-id', autocomplete: 'off', spellcheck: 'false', value: p.id })
    idInput.addEventListener('input', () => {
      const old = p.id
      p.id = idInput.value.trim()
      for (const l of Object.keys(texts)) {
        const ps = texts[l].purposes
        if (ps && typeof ps === 'object' && ps[old] !== undefined) {
          ps[p.id] = ps[old]
          delete ps[old]
        }
      }
      changed()
    })
    idInput.addEventListener('change', renderTexts)
    const box1 = (key: 'required' | 'signup' | 'required_for_signup', label: string) => {
      const id = pre + '-' + key
      const c = h('input', { id, type: 'checkbox' })
      c.checked = !!p[key]
      c.addEventListener('change', () => {
        if (c.checked) p[key] = true
        else delete p[key]
        changed()
      })
      return h('div', { class: 'check' }, c, h('label', { for: id }, label))
    }
    const cm = h('fieldset', { class: 'cm' }, h('legend', null, 'Google Consent Mode types it grants'))
    for (const t of consentTypes) {
      const id = pre + '-cm-' + t
      const c = h('input', { id, type: 'checkbox' })
      c.checked = (p.consent_mode || []).indexOf(t) >= 0
      c.addEventListener('change', () => {
        const set = (p.consent_mode || []).filter(x => x !== t)
        if (c.checked) set.push(t)
        p.consent_mode = consentTypes.filter(x => set.indexOf(x) >= 0)
        if (!p.consent_mode.length) delete p.consent_mode
        changed()
      })
      cm.append(h('div', { class: 'check' }, c, h('label', { for: id }, t)))
    }
    const cookies = h('input', { id: pre + '-cookies', autocomplete: 'off', spellcheck: 'false', value: (p.cookies || []).join(', ') })
    cookies.addEventListener('input', () => {
      const list = cookies.value.split(/[\s,]+/).filter(Boolean)
      if (list.length) p.cookies = list
      else delete p.cookies
      changed()
    })
    const move = (d: number, label: string, disabled: boolean) => {
      const b = h('button', { type: 'button', class: 'quiet', 'aria-label': `${label}: purpose ${n} (${p.id || 'no id'})`, disabled }, label)
      b.addEventListener('click', () => {
        const [x] = purposes.splice(i, 1)
        purposes.splice(i + d, 0, x)
        renderAll()
        const again = document.getElementById('sfp-' + (i + d) + '-id')
        if (again) again.focus()
      })
      return b
    }
    const remove = h('button', { type: 'button', class: 'quiet', 'aria-label': `Remove purpose ${n} (${p.id || 'no id'})` }, 'Remove')
    remove.addEventListener('click', () => {
      purposes.splice(i, 1)
      renderAll()
      $('sf-add-purpose').focus()
    })
    box.append(
      h('fieldset', { class: 'purpose' },
        h('legend', null, `Purpose ${n}`),
        h('div', { class: 'field' }, h('label', { for: pre + '-id' }, 'Id (such as analytics)'), idInput),
        box1('required', 'Required (always on, not a choice)'),
        box1('signup', 'Asked in the signup form, not the banner'),
        box1('required_for_signup', 'Must be ticked to sign up'),
        cm,
        h('div', { class: 'field' }, h('label', { for: pre + '-cookies' }, 'Cookies to delete when refused (such as _ga, _ga_*)'), cookies),
        h('div', { class: 'row' }, move(-1, 'Move up', i === 0), move(1, 'Move down', i === purposes.length - 1), remove),
      ),
    )
  })
}

function renderAll() {
  renderPurposes()
  renderTexts()
  changed()
}

// load puts a config into the form.
export function load(site: Site | null) {
  base = site ? (JSON.parse(JSON.stringify(site)) as Site) : null
  const s = (base || { id: '', origins: [], purposes: [], policy_version: '' }) as Site & Record<string, any>
  setVal('sf-id', s.id)
  setVal('sf-name', s.name || '')
  setVal('sf-origins', (s.origins || []).join('\n'))
  purposes = (s.purposes || []).map(p => ({ ...p })) as PurposeRow[]
  texts = JSON.parse(JSON.stringify(s.texts || {}))
  const theme = s.theme || {}
  setVal('sf-scheme', theme.scheme || 'auto')
  setVal('sf-position', theme.position || 'bar-bottom')
  setVal('sf-brand', expand(theme.brand || '#0b57d0'))
  $<HTMLInputElement>('sf-signup').checked = (s.modes || []).indexOf('signup') >= 0
  $<HTMLInputElement>('sf-doi').checked = !!s.double_opt_in
  const tr = s.signup_triggers || {}
  setVal('sf-after', tr.after_seconds || 0)
  setVal('sf-selector', tr.selector || '')
  $<HTMLInputElement>('sf-exit').checked = !!tr.exit_intent
  setVal('sf-retention', s.retention_days || 0)
  setVal('sf-countries', (s.opt_in_countries || []).join(' '))
  const langs = Object.keys(builtin.texts).sort()
  for (const l of Object.keys(texts)) if (langs.indexOf(l) < 0) langs.push(l)
  const sel = $<HTMLSelectElement>('sf-lang')
  const keep = sel.value
  sel.replaceChildren(...langs.map(l => h('option', { value: l }, languageName(l))))
  sel.value = langs.indexOf(keep) >= 0 ? keep : 'en'
  clearErrors()
  renderAll()
}

function languageName(l: string) {
  try {
    const n = new Intl.DisplayNames(['en'], { type: 'language' }).of(l)
    return n ? `${n} (${l})` : l
  } catch (e) {
    return l
  }
}

const expand = (c: string) => (/^#[0-9a-f]{3}$/i.test(c) ? '#' + c.slice(1).split('').map(x => x + x).join('') : c)

// read gives the config the form describes.
export function read(): Site {
  const s = JSON.parse(JSON.stringify(base || {})) as Site & Record<string, any>
  delete s.created_at
  delete s.updated_at
  s.id = val('sf-id').trim()
  if (val('sf-name').trim()) s.name = val('sf-name').trim()
  else delete s.name
  s.origins = lines(val('sf-origins'))
  s.purposes = purposes.map(p => ({ ...p }))
  const modes = (s.modes || ['banner']).filter((m: string) => m !== 'signup')
  if (!modes.length) modes.push('banner')
  if (checked('sf-signup')) modes.push('signup')
  s.modes = modes
  if (checked('sf-doi')) s.double_opt_in = true
  else delete s.double_opt_in
  const cleaned: Record<string, TextTree> = {}
  for (const l of Object.keys(texts)) {
    const t = prune(texts[l])
    if (t) cleaned[l] = t
  }
  if (Object.keys(cleaned).length) s.texts = cleaned
  else delete s.texts
  s.theme = { ...(s.theme || {}), scheme: val('sf-scheme'), position: val('sf-position'), brand: val('sf-brand') }
  const tr: Record<string, unknown> = {}
  if (Number(val('sf-after')) > 0) tr.after_seconds = Number(val('sf-after'))
  if (checked('sf-exit')) tr.exit_intent = true
  if (val('sf-selector').trim()) tr.selector = val('sf-selector').trim()
  s.signup_triggers = tr
  s.retention_days = Number(val('sf-retention')) || 0
  const cs = codes(val('sf-countries'))
  if (cs.length) s.opt_in_countries = cs
  else delete s.opt_in_countries
  return s
}

// prune drops empty strings and empty objects from a text tree.
function prune(t: TextTree): TextTree | null {
  const out: TextTree = {}
  for (const k of Object.keys(t)) {
    const v = t[k]
    if (typeof v === 'string') {
      if (v) out[k] = v
    } else {
      const p = prune(v)
      if (p) out[k] = p
    }
  }
  return Object.keys(out).length ? out : null
}

// showServerError puts a 422 message beside the field it names.
export function showServerError(message: string): boolean {
  const field = message.split(':')[0]
  const map: [RegExp, string][] = [
    [/^id$/, 'sf-id'], [/^name$/, 'sf-name'], [/^origins/, 'sf-origins'], [/^purposes/, 'sf-purposes'],
    [/^texts/, 'sf-texts'], [/^signup_triggers/, 'sf-after'], [/^retention_days/, 'sf-retention'],
    [/^opt_in_countries/, 'sf-countries'],
  ]
  for (const [re, id] of map) {
    if (re.test(field)) {
      err(id, message)
      return true
    }
  }
  return false
}

export function init() {
  for (const id of ['sf-id', 'sf-name', 'sf-origins', 'sf-scheme', 'sf-position', 'sf-brand', 'sf-signup', 'sf-doi', 'sf-after',
    'sf-selector', 'sf-exit', 'sf-retention', 'sf-countries']) {
    $(id).addEventListener('input', () => changed())
    $(id).addEventListener('change', () => changed())
  }
  $('sf-lang').addEventListener('change', () => {
    renderTexts()
    changed()
  })
  $('sf-add-purpose').addEventListener('click', () => {
    purposes.push({ id: '' })
    renderAll()
    const input = document.getElementById('sfp-' + (purposes.length - 1) + '-id')
    if (input) input.focus()
  })
  $('sf-countries-default').addEventListener('click', () => {
    setVal('sf-countries', builtin.optIn.join(' '))
    changed()
  })
}

export const purposeList = () => purposes
