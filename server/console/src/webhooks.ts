// Webhooks: the endpoints that hear of every consent change, each one's
// recent deliveries, "send test event" and "retry now". The section builds
// its own DOM here, so the shared page only holds its empty <section>.
import { getJSON, request, sendJSON } from './api'
import { $, h, say, table, time } from './dom'
import { errorText, state } from './state'

interface Endpoint {
  id: string
  url: string
  events: string[]
  sites: string[]
  created_at: string
  secret?: string
}

interface Delivery {
  id: string
  event_id: string
  type: string
  status: 'pending' | 'delivered' | 'failed'
  attempts: number
  last_status_code: number
  last_error: string
  created_at: string
  next_attempt_at?: string
  delivered_at?: string
}

const eventTypes: [string, string][] = [
  ['consent.recorded', 'every banner or settings choice'],
  ['signup.created', 'every signup'],
  ['signup.confirmed', 'a confirmed double opt-in'],
  ['consent.withdrawn', 'every withdrawal (settings, unsubscribe link, admin)'],
  ['subject.erased', 'an erasure, with what the recipient needs to erase the person too'],
]

let selected: Endpoint | null = null
const el = {
  msg: h('p', { id: 'wh-msg', class: 'msg', role: 'status' }),
  secret: h('div', { id: 'wh-secret', hidden: true }),
  list: h('table', { id: 'wh-table' }, h('caption', null, 'Endpoints, oldest first')),
  sites: h('fieldset', { id: 'wh-sites' }),
  deliveriesH: h('h2', { id: 'wh-deliveries-h', tabindex: '-1' }, 'Deliveries'),
  deliveries: h('table', { id: 'wh-deliveries' }, h('caption', null, 'Recent deliveries, newest first')),
  dmsg: h('p', { id: 'wh-dmsg', class: 'msg', role: 'status' }),
}
const deliveriesBox = h('div', { id: 'wh-deliveries-box', hidden: true })

function form(): HTMLFormElement {
  const f = h('form', { id: 'wh-form', class: 'filters' },
    h('div', { class: 'field wide' },
      h('label', { for: 'wh-url' }, 'URL (https recommended)'),
      h('input', { id: 'wh-url', name: 'url', type: 'url', required: true, size: 60, autocomplete: 'off', spellcheck: 'false', placeholder: 'https://crm.example/hooks/assent' })),
    h('fieldset', { id: 'wh-events' },
      h('legend', null, 'Events'),
      ...eventTypes.map(([t, what]) => h('div', null,
        h('input', { type: 'checkbox', id: 'wh-ev-' + t.replace('.', '-'), name: 'events', value: t }),
        ' ', h('label', { for: 'wh-ev-' + t.replace('.', '-'), style: 'display:inline;font-weight:normal' }, h('code', null, t), ' — ', what)))),
    el.sites,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add endpoint')))
  f.addEventListener('submit', e => {
    e.preventDefault()
    create(f)
  })
  return f
}

function fillSites() {
  el.sites.replaceChildren(h('legend', null, 'Sites (none ticked = every site)'),
    ...state.sites.map(s => h('div', null,
      h('input', { type: 'checkbox', id: 'wh-site-' + s.id, name: 'sites', value: s.id }),
      ' ', h('label', { for: 'wh-site-' + s.id, style: 'display:inline;font-weight:normal' }, s.id))))
}

const checked = (f: HTMLFormElement, name: string) =>
  Array.from(f.querySelectorAll<HTMLInputElement>(`input[name="${name}"]:checked`)).map(i => i.value)

async function create(f: HTMLFormElement) {
  const url = ($('wh-url') as HTMLInputElement).value.trim()
  const events = checked(f, 'events')
  if (!events.length) {
    say(el.msg, 'Tick at least one event.', 'error')
    return
  }
  try {
    const ep = await sendJSON<Endpoint>('POST', '/v1/admin/webhooks', { url, events, sites: checked(f, 'sites') })
    f.reset()
    el.secret.replaceChildren(
      h('p', null, 'Signing secret of ', h('code', null, ep.url), ' — shown this once; give it to the receiver now:'),
      h('p', null, h('code', { id: 'wh-secret-value' }, ep.secret || '')))
    el.secret.hidden = false
    say(el.msg, 'Endpoint added.', 'ok')
    await load()
  } catch (e) {
    say(el.msg, errorText(e), 'error')
  }
}

function button(label: string, fn: () => void, cls = '') {
  const b = h('button', { type: 'button', class: cls || null }, label)
  b.addEventListener('click', fn)
  return b
}

async function load() {
  try {
    const eps = await getJSON<Endpoint[]>('/v1/admin/webhooks')
    table(el.list, ['URL', 'Events', 'Sites', 'Created (UTC)', 'Actions'], eps.map(ep => [
      ep.url, ep.events.join(', '), ep.sites.length ? ep.sites.join(', ') : 'all', time(ep.created_at),
      h('span', { class: 'actions' },
        button('Deliveries', () => showDeliveries(ep), 'quiet'),
        button('Send test event', () => test(ep), 'quiet'),
        button('Delete', () => remove(ep), 'danger')),
    ]))
    if (!eps.length) say(el.msg, 'No endpoint yet.')
    if (selected && !eps.some(ep => ep.id === selected!.id)) {
      selected = null
      deliveriesBox.hidden = true
    }
  } catch (e) {
    say(el.msg, errorText(e), 'error')
  }
}

async function test(ep: Endpoint) {
  try {
    await request('POST', '/v1/admin/webhooks/' + encodeURIComponent(ep.id) + '/test')
    say(el.msg, 'Test event queued for ' + ep.url + '.', 'ok')
    await showDeliveries(ep)
  } catch (e) {
    say(el.msg, errorText(e), 'error')
  }
}

async function remove(ep: Endpoint) {
  if (!confirm('Delete the endpoint ' + ep.url + '? It gets no further events.')) return
  try {
    await request('DELETE', '/v1/admin/webhooks/' + encodeURIComponent(ep.id))
    say(el.msg, 'Deleted ' + ep.url + '.', 'ok')
    await load()
  } catch (e) {
    say(el.msg, errorText(e), 'error')
  }
}

async function showDeliveries(ep: Endpoint) {
  const first = !selected || selected.id !== ep.id
  selected = ep
  el.deliveriesH.textContent = 'Deliveries to ' + ep.url
  deliveriesBox.hidden = false
  await loadDeliveries()
  if (first) el.deliveriesH.focus()
}

async function loadDeliveries() {
  if (!selected) return
  const ep = selected
  try {
    const ds = await getJSON<Delivery[]>('/v1/admin/webhooks/' + encodeURIComponent(ep.id) + '/deliveries?limit=100')
    table(el.deliveries, ['Created (UTC)', 'Event', 'Status', 'Attempts', 'Last HTTP status', 'Last error', 'Next attempt (UTC)', 'Delivered (UTC)', 'Action'],
      ds.map(d => [time(d.created_at), d.type, d.status, d.attempts, d.last_status_code || '', d.last_error,
        time(d.next_attempt_at || ''), time(d.delivered_at || ''),
        d.status === 'failed' ? button('Retry now', () => retry(ep, d)) : '']),
      (_, col, v) => (col === 5 ? 'wrap' : col === 2 ? 'st-' + v : ''))
    say(el.dmsg, ds.length ? `${ds.length} deliveries.` : 'No delivery yet.')
  } catch (e) {
    say(el.dmsg, errorText(e), 'error')
  }
}

async function retry(ep: Endpoint, d: Delivery) {
  try {
    await request('POST', '/v1/admin/webhooks/' + encodeURIComponent(ep.id) + '/deliveries/' + encodeURIComponent(d.id) + '/retry')
    say(el.dmsg, 'Queued again.', 'ok')
    await loadDeliveries()
  } catch (e) {
    say(el.dmsg, errorText(e), 'error')
  }
}

export function init() {
  deliveriesBox.append(el.deliveriesH,
    h('div', { class: 'row' }, button('Refresh', () => loadDeliveries(), 'quiet')),
    el.dmsg,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'wh-deliveries-h' }, el.deliveries))
  $('webhooks').append(
    h('p', { class: 'note' }, 'Each endpoint gets the events it asks for as signed POSTs (Standard Webhooks), in record order, retried for about a day. See docs/webhooks.md for the payloads and the signature check.'),
    form(), el.msg, el.secret,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Endpoints' }, el.list),
    deliveriesBox)
}

export async function show() {
  fillSites()
  await load()
  await loadDeliveries()
}
