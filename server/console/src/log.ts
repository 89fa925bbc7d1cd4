// The consent log: filters, pages and downloads of the consents and signups
// exports. A page is the JSON Lines export with limit and after (the last
// id of the page before); the previous pages' cursors are kept here.
import { download, getJSON, jsonl, q } from './api'
import { $, Child, facts, h, say, table, time } from './dom'
import { errorText, onSiteChange, sitePath, state } from './state'
import { ConsentRecord } from './types'

let cursors: string[] = [''] // after= of each page seen; the last is the current page
let shownFor = ''

function filters(): Record<string, string> {
  const v = (id: string) => ($(id) as HTMLInputElement).value.trim()
  return {
    from: v('f-from'),
    to: v('f-to'),
    purpose: v('f-purpose'),
    country: v('f-country').toUpperCase(),
    regime: v('f-regime'),
    email: v('f-email'),
  }
}

const size = () => Number(($('f-size') as HTMLSelectElement).value) || 50

async function load() {
  const site = state.site
  const msg = $('log-msg')
  if (!site) {
    say(msg, 'There is no site yet: create one under Sites.')
    return
  }
  const after = cursors[cursors.length - 1]
  say(msg, 'Loading…')
  let recs: ConsentRecord[]
  try {
    // One more than a page tells whether there is a next page.
    recs = await jsonl<ConsentRecord>(sitePath('/consents?') + q({ ...filters(), format: 'jsonl', limit: size() + 1, after }))
  } catch (e) {
    say(msg, errorText(e), 'error')
    return
  }
  const more = recs.length > size()
  recs = recs.slice(0, size())
  const purposes = site.purposes.map(p => p.id)
  table(
    $<HTMLTableElement>('log-table'),
    ['Recorded (UTC)', 'Event', 'Source', 'Basis', 'Email or visitor', 'Country', 'Regime', 'Notice', ...purposes, 'Page', 'Id'],
    recs.map(r => {
      const who: Child = r.email || r.visitor_id || (r.erased ? '(erased)' : '')
      const notice: Child = r.notice_hash
        ? h('button', { type: 'button', class: 'link', 'data-notice': r.notice_hash, 'aria-label': 'Show notice version ' + r.notice_version + ' of record ' + r.id }, r.notice_version)
        : r.notice_version
      return [time(r.recorded_at), r.event, r.source, r.basis, who, r.country, r.regime, notice,
        ...purposes.map(p => r.choices[p] || ''), r.page_url, r.id] as Child[]
    }),
    (_, col, v) => (col >= 8 && col < 8 + purposes.length ? String(v) : ''),
  )
  const page = cursors.length
  const first = (page - 1) * size() + 1
  $('log-page').textContent = recs.length
    ? `Page ${page}: records ${first}–${first + recs.length - 1}`
    : page > 1 ? `Page ${page}: no more records` : 'No record matches'
  ;($('log-prev') as HTMLButtonElement).disabled = page === 1
  const next = $('log-next') as HTMLButtonElement
  next.disabled = !more
  next.dataset.after = recs.length ? recs[recs.length - 1].id : ''
  say(msg, recs.length ? `Showing ${recs.length} record${recs.length === 1 ? '' : 's'}.` : 'No record matches these filters.')
}

function fillPurposes() {
  const sel = $<HTMLSelectElement>('f-purpose')
  const keep = sel.value
  sel.replaceChildren(new Option('Any', ''))
  for (const p of state.site ? state.site.purposes : []) sel.append(new Option(p.id, p.id))
  sel.value = state.site && state.site.purposes.some(p => p.id === keep) ? keep : ''
}

// flatten lists a text tree's strings by their key paths.
function flatten(prefix: string, v: unknown, out: [string, string][]) {
  if (typeof v === 'string') out.push([prefix, v])
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) flatten(prefix ? prefix + '.' + k : k, (v as Record<string, unknown>)[k], out)
}

// showNotice opens the exact notice a record cites: what the person read.
async function showNotice(hash: string, opener: HTMLElement) {
  const msg = $('log-msg')
  let doc: Record<string, unknown>
  try {
    doc = await getJSON<Record<string, unknown>>('/v1/admin/notices/' + hash) // sha256:hex, nothing to escape
  } catch (e) {
    say(msg, 'The notice could not be read: ' + errorText(e), 'error')
    return
  }
  const items: [string, string][] = []
  flatten('', doc.texts, items)
  $('notice-meta').textContent = `Language ${doc.locale || '?'}, policy version ${doc.policy_version || '?'}, ${hash}`
  facts($('notice-facts'), items)
  $('notice-json').textContent = JSON.stringify(doc, null, 2)
  const d = $<HTMLDialogElement>('notice-dialog')
  d.showModal()
  $('notice-close').focus()
  d.addEventListener('close', () => opener.focus(), { once: true })
}

export function init() {
  $('log-table').addEventListener('click', e => {
    const b = (e.target as Element).closest<HTMLElement>('[data-notice]')
    if (b) showNotice(b.dataset.notice!, b)
  })
  $('notice-close').addEventListener('click', () => $<HTMLDialogElement>('notice-dialog').close())
  $('log-filters').addEventListener('submit', e => {
    e.preventDefault()
    cursors = ['']
    load()
  })
  $('log-filters').addEventListener('reset', () => {
    setTimeout(() => {
      cursors = ['']
      load()
    })
  })
  $('log-prev').addEventListener('click', () => {
    if (cursors.length > 1) cursors.pop()
    load()
  })
  $('log-next').addEventListener('click', e => {
    const after = (e.target as HTMLButtonElement).dataset.after
    if (after) cursors.push(after)
    load()
  })
  for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>('#log [data-export]'))) {
    b.addEventListener('click', async () => {
      const what = b.dataset.export!
      const format = b.dataset.format!
      const msg = $('log-msg')
      say(msg, 'Preparing the download…')
      b.disabled = true
      try {
        const f = filters()
        const name = await download(sitePath('/' + what + '?') + q({ ...f, format }), `assent-${what}.${format}`)
        say(msg, 'Downloaded ' + name + '.', 'ok')
      } catch (e) {
        say(msg, errorText(e), 'error')
      } finally {
        b.disabled = false
      }
    })
  }
  onSiteChange(() => {
    fillPurposes()
    shownFor = ''
  })
}

export function show() {
  const id = state.site ? state.site.id : ''
  if (shownFor !== id) {
    shownFor = id
    cursors = ['']
    fillPurposes()
  }
  load()
}
