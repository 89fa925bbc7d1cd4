// Sites: the list, the config editor (the whole config as JSON, saved with
// PUT or created with POST; the server's 422 message is shown as is) and a
// live preview of the widget in both regimes.
//
// The preview is a sandboxed srcdoc iframe (scripts, but an opaque origin)
// holding the one script tag a site owner pastes. The opaque origin means
// the preview's writes carry "Origin: null", which no site allows, so
// clicking in a preview never stores a record. data-demo-country asks for a
// regime, but the server honours it only when started with --demo; without
// it both previews show the regime of the admin's own address.
import { ApiError, request } from './api'
import { $, h, say, table } from './dom'
import { choose, errorText, loadSites, onSiteChange, state } from './state'
import { Site } from './types'

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
      const edit = h('button', { type: 'button', class: 'quiet', 'aria-label': 'Edit ' + s.id }, 'Edit')
      edit.addEventListener('click', () => {
        choose(s)
        $('config').focus()
      })
      return [s.id, s.name || '', s.policy_version, (s.origins || []).join(' '), s.purposes.map(p => p.id).join(', '), edit]
    }),
  )
}

function srcdoc(site: Site, country: string) {
  // Attribute values are escaped; the site id is [a-z0-9_-] anyway.
  const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')
  const src = location.origin + '/w/' + encodeURIComponent(site.id) + '.js?preview=' + encodeURIComponent(site.policy_version + '-' + (site.updated_at || ''))
  return (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview</title></head>' +
    '<body style="font:15px system-ui,sans-serif;margin:1.5em;color:#1b1f24">' +
    '<h1 style="font-size:1.2em">A page of ' + esc(site.name || site.id) + '</h1><p>The widget as a visitor sees it.</p>' +
    '<script src="' + esc(src) + '" data-demo-country="' + country + '" async></script></body></html>'
  )
}

function preview() {
  const site = state.site
  const note = $('preview-note')
  for (const [id, cc] of [['preview-optin', 'DE'], ['preview-notice', 'US']]) {
    const f = $<HTMLIFrameElement>(id)
    f.srcdoc = site ? srcdoc(site, cc) : ''
  }
  note.textContent =
    'Clicks in a preview store nothing (its origin is not allowed to write). The regimes follow the country ' +
    'switch only when the server runs with --demo; otherwise both previews show the regime of your own address.'
}

function fillEditor() {
  ;($('config') as HTMLTextAreaElement).value = state.site ? editable(state.site) : ''
  say($('config-msg'), '')
  $('config-h').textContent = state.site ? 'Configuration of ' + state.site.id : 'Configuration'
}

async function save(create: boolean) {
  const msg = $('config-msg')
  let body: Site
  try {
    body = JSON.parse(($('config') as HTMLTextAreaElement).value)
  } catch (e) {
    say(msg, 'Not valid JSON: ' + errorText(e), 'error')
    return
  }
  const path = create ? '/v1/admin/sites' : '/v1/admin/sites/' + encodeURIComponent(state.site ? state.site.id : body.id)
  try {
    const saved: Site = await (await request(create ? 'POST' : 'PUT', path, body)).json()
    await loadSites(saved.id)
    say(msg, (create ? 'Created ' : 'Saved ') + saved.id + '; policy_version is ' + saved.policy_version + '.', 'ok')
  } catch (e) {
    const prefix = e instanceof ApiError ? `Not saved (${e.status} ${e.code}): ` : 'Not saved: '
    say(msg, prefix + errorText(e), 'error')
  }
}

export function init() {
  $('config-form').addEventListener('submit', e => {
    e.preventDefault()
    save(false)
  })
  $('config-create').addEventListener('click', () => save(true))
  $('config-reload').addEventListener('click', fillEditor)
  onSiteChange(() => {
    if ($('sites').hidden) return
    show()
  })
}

export function show() {
  renderList()
  fillEditor()
  preview()
}
