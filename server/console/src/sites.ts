// Sites: the list, the editor — a form with a live preview beside it, or
// the whole config as JSON — the embed code, and the saved widget itself.
//
// The live preview is drawn here from the form, in the language chosen,
// for both regimes; it is the widget's layout in miniature, not the widget.
// The saved widget is shown below in two sandboxed srcdoc iframes (scripts,
// but an opaque origin) holding the one script tag a site owner pastes. The
// opaque origin means their writes carry "Origin: null", which no site
// allows, so clicking in a preview never stores a record. data-demo-country
// asks for a regime, honoured only when the server runs with --demo.
import { ApiError, getJSON, request } from './api'
import { $, h, say, table } from './dom'
import { choose, errorText, isAdmin, loadSites, onSiteChange, state } from './state'
import * as form from './siteform'
import { Site } from './types'

let loadedTexts = false
let view: 'form' | 'json' = 'form'

function editable(site: Site) {
  const c: Record<string, unknown> = { ...site }
  delete c.created_at
  delete c.updated_at
  return JSON.stringify(c, null, 2)
}

function renderList() {
  table(
    $<HTMLTableElement>('sites-table'),
    ['Id', 'Name', 'Policy version', 'Origins', 'Purposes', 'Edit'],
    state.sites.map(s => {
      const edit = h('button', { type: 'button', class: 'quiet', 'aria-label': 'Edit ' + s.id }, isAdmin() ? 'Edit' : 'Show')
      edit.addEventListener('click', () => {
        choose(s)
        $('sf-name').focus()
      })
      return [s.id, s.name || '', s.policy_version, (s.origins || []).join(' '), s.purposes.map(p => p.id).join(', '), edit]
    }),
  )
}

// snippet is the embed code of a site (API.md, "Embedding on real sites").
export function snippet(site: Site) {
  const base = location.origin + '/w/' + encodeURIComponent(site.id)
  return (
    '<!-- In <head>, before any Google tag: -->\n' +
    `<script src="${base}/consent-mode.js"></script>\n` +
    '<!-- Anywhere in the page, for example just before </body>: -->\n' +
    `<script src="${base}.js" async></script>`
  )
}

function srcdoc(site: Site, country: string) {
  const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')
  const src = location.origin + '/w/' + encodeURIComponent(site.id) + '.js?preview=' + encodeURIComponent(site.policy_version + '-' + (site.updated_at || ''))
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview</title></head>' +
    '<body style="font:15px system-ui,sans-serif;margin:1.5em;color:#1b1f24">' +
    '<h1 style="font-size:1.2em">A page of ' + esc(site.name || site.id) + '</h1><p>The widget as a visitor sees it.</p>' +
    '<script src="' + esc(src) + '" data-demo-country="' + country + '" async></script></body></html>'
  )
}

function savedPreview() {
  const site = state.site
  for (const [id, cc] of [['preview-optin', 'DE'], ['preview-notice', 'US']]) {
    $<HTMLIFrameElement>(id).srcdoc = site ? srcdoc(site, cc) : ''
  }
  $('preview-note').textContent =
    'The real widget with the saved configuration. Clicks here store nothing (its origin is not allowed to write). The regimes follow the ' +
    'country only when the server runs with --demo; otherwise both show the regime of your own address.'
  $<HTMLTextAreaElement>('snippet').value = site ? snippet(site) : ''
  say($('snippet-msg'), '')
}

// livePreview draws both regimes from the form as it is now.
function livePreview() {
  const s = form.read()
  const t = (path: string[]) => form.shownText(path)
  const theme = (s.theme || {}) as { brand?: string; scheme?: string }
  const brand = theme.brand || '#0b57d0'
  const dark = theme.scheme === 'dark'
  const button = (label: string, primary: boolean) =>
    h('span', { class: 'mock-btn' + (primary ? ' primary' : '') }, label)
  const style = (el: HTMLElement) => {
    el.style.setProperty('--brand', brand)
    el.classList.toggle('dark', dark)
    el.lang = form.lang()
    return el
  }
  const banner = s.purposes.filter(p => !p.signup && p.id)
  const optin = style(h('div', { class: 'mock-box' },
    h('p', { class: 'mock-title' }, t(['title'])),
    h('p', null, t(['description'])),
    h('ul', { class: 'mock-purposes' }, ...banner.map(p => h('li', null,
      h('span', { class: 'mock-check' + (p.required ? ' on' : '') }, p.required ? '✓' : ''),
      h('strong', null, t(['purposes', p.id, 'label']) || p.id), ' — ', t(['purposes', p.id, 'description']),
      p.required ? h('em', null, ' (' + t(['always_on']) + ')') : null))),
    h('p', { class: 'mock-buttons' }, button(t(['accept_all']), true), button(t(['reject_all']), true), button(t(['settings']), false)),
  ))
  const notice = style(h('div', { class: 'mock-box' },
    h('p', { class: 'mock-title' }, t(['title'])),
    h('p', null, t(['notice'])),
    h('p', { class: 'mock-buttons' }, button(t(['ok']), true), button(t(['optout']), false)),
  ))
  $('live-optin').replaceChildren(optin)
  $('live-notice').replaceChildren(notice)
}

function fillEditor() {
  form.load(state.site)
  ;($('config') as HTMLTextAreaElement).value = state.site ? editable(state.site) : ''
  say($('config-msg'), '')
  say($('site-msg'), '')
  $('config-h').textContent = state.site ? 'Configuration of ' + state.site.id : 'A new site'
  $<HTMLInputElement>('sf-id').readOnly = !!state.site
}

function setView(v: 'form' | 'json') {
  if (v === 'json' && view === 'form') ($('config') as HTMLTextAreaElement).value = JSON.stringify(form.read(), null, 2)
  if (v === 'form' && view === 'json') {
    try {
      form.load(JSON.parse(($('config') as HTMLTextAreaElement).value))
    } catch (e) {
      say($('config-msg'), 'Fix the JSON first: ' + errorText(e), 'error')
      return
    }
  }
  view = v
  $('editor').hidden = v !== 'form'
  $('config-form').hidden = v !== 'json'
  $('view-form').setAttribute('aria-pressed', String(v === 'form'))
  $('view-json').setAttribute('aria-pressed', String(v === 'json'))
}

async function put(body: Site, create: boolean, msg: HTMLElement) {
  const path = create ? '/v1/admin/sites' : '/v1/admin/sites/' + encodeURIComponent(state.site ? state.site.id : body.id)
  const saved: Site = await (await request(create ? 'POST' : 'PUT', path, body)).json()
  await loadSites(saved.id)
  say(msg, (create ? 'Created ' : 'Saved ') + saved.id + '; its policy version is ' + saved.policy_version + '.', 'ok')
}

async function saveJSON(create: boolean) {
  const msg = $('config-msg')
  let body: Site
  try {
    body = JSON.parse(($('config') as HTMLTextAreaElement).value)
  } catch (e) {
    say(msg, 'Not valid JSON: ' + errorText(e), 'error')
    return
  }
  try {
    await put(body, create, msg)
  } catch (e) {
    const prefix = e instanceof ApiError ? `Not saved (${e.status} ${e.code}): ` : 'Not saved: '
    say(msg, prefix + errorText(e), 'error')
  }
}

async function saveForm(create: boolean) {
  const msg = $('site-msg')
  form.clearErrors()
  if (create) $<HTMLInputElement>('sf-id').readOnly = false
  if (!form.check()) {
    say(msg, 'Not saved: correct the fields marked beside them.', 'error')
    const bad = document.querySelector<HTMLElement>('#site-form [aria-invalid="true"]')
    if (bad) bad.focus()
    return
  }
  try {
    await put(form.read(), create || !state.site, msg)
  } catch (e) {
    if (e instanceof ApiError && e.status === 422 && form.showServerError(e.message)) {
      say(msg, 'Not saved: ' + e.message, 'error')
    } else if (e instanceof ApiError && e.status === 409) {
      say(msg, 'Not saved: a site with this id exists already. Choose another id.', 'error')
    } else {
      say(msg, 'Not saved: ' + errorText(e), 'error')
    }
  }
}

async function copySnippet() {
  const area = $<HTMLTextAreaElement>('snippet')
  const msg = $('snippet-msg')
  try {
    await navigator.clipboard.writeText(area.value)
    say(msg, 'Copied. Paste it into your pages as the note above says.', 'ok')
  } catch (e) {
    area.focus()
    area.select()
    say(msg, 'Selected: press Ctrl+C (⌘C on a Mac) to copy.', 'ok')
  }
}

export function init() {
  form.init()
  form.onChange(() => {
    form.check()
    livePreview()
  })
  $('site-form').addEventListener('submit', e => {
    e.preventDefault()
    saveForm(false)
  })
  $('site-create').addEventListener('click', () => saveForm(true))
  $('site-discard').addEventListener('click', fillEditor)
  $('site-new').addEventListener('click', () => {
    form.load(null)
    $<HTMLInputElement>('sf-id').readOnly = false
    $('config-h').textContent = 'A new site'
    setView('form')
    say($('site-msg'), 'A new site: fill in the form, then choose “Create as a new site”.')
    $('sf-id').focus()
  })
  $('config-form').addEventListener('submit', e => {
    e.preventDefault()
    saveJSON(false)
  })
  $('config-create').addEventListener('click', () => saveJSON(true))
  $('config-reload').addEventListener('click', fillEditor)
  $('view-form').addEventListener('click', () => setView('form'))
  $('view-json').addEventListener('click', () => setView('json'))
  $('snippet-copy').addEventListener('click', copySnippet)
  onSiteChange(() => {
    if ($('sites').hidden) return
    show()
  })
}

export async function show() {
  if (!loadedTexts) {
    try {
      const b = await getJSON<{ texts: Record<string, form.TextTree>; opt_in_countries: string[] }>('/v1/admin/texts')
      form.builtin.texts = b.texts
      form.builtin.optIn = b.opt_in_countries
      loadedTexts = true
    } catch (e) {
      say($('site-msg'), errorText(e), 'error')
    }
  }
  renderList()
  fillEditor()
  savedPreview()
}
