// Requests a person makes by mail, phone or letter, answered from the
// subject view: "Record a withdrawal" (objection, Art. 21(3) GDPR),
// "Rectify" (Art. 16) and the printable rights report (Art. 15, sent back
// within the month of Art. 12(3)). Everything here is built in this file
// and hung under the subject view, so the shared markup stays as it is.
import { sendJSON } from './api'
import { $, Child, facts, h, say, table, time } from './dom'
import { errorText } from './state'

interface PurposeReport {
  purpose: string
  state: string
  given_at?: string
  given_source?: string
  withdrawn_at?: string
  withdrawn_source?: string
  record: string
}

interface SiteReport {
  site: string
  purposes: PurposeReport[]
  confirmed_at?: string
  rectified_at?: string
}

interface RequestReport {
  at: string
  site: string
  event: string
  record: string
  reason: string
  purposes?: string[]
  from?: string
  to?: string
}

export interface RightsReport {
  email: string
  addresses: string[]
  records: number
  first_at?: string
  last_at?: string
  double_opt_in: string
  sites: SiteReport[]
  requests: RequestReport[]
  erased: { records: number; fields: string[]; suppressed: boolean }
}

interface Answer {
  email: string
  report?: RightsReport
}

// The print style shows the report alone, on white, when it is printed.
const printCSS = `
@media print {
  body.print-report * { visibility: hidden !important; }
  body.print-report #rights-report, body.print-report #rights-report * { visibility: visible !important; }
  body.print-report #rights-report { position: absolute; inset: 0 auto auto 0; width: 100%; color: #000; background: #fff; }
  body.print-report #rights-report .no-print { display: none !important; }
  #rights-report table { border-collapse: collapse; width: 100%; }
  #rights-report th, #rights-report td { border: 1px solid #999; padding: 2px 6px; text-align: left; }
  #rights-report h2, #rights-report h3 { break-after: avoid; }
}
#rights-report .note { max-width: 70ch; }
#rights textarea { width: 100%; }
`

let current: Answer | null = null
let again: (email: string) => void = () => {}

const field = (id: string, label: string, input: HTMLElement, help?: string): HTMLElement =>
  h('div', { class: 'field wide' }, h('label', { for: id }, label), input, help ? h('p', { class: 'note', id: id + '-help' }, help) : null)

function dialog(id: string, title: string, body: Child[], submit: string, onSubmit: (form: HTMLFormElement) => void): HTMLDialogElement {
  const form = h('form', { method: 'dialog' }, ...body,
    h('p', { id: id + '-msg', class: 'msg', role: 'alert' }),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: id + '-cancel' }, 'Cancel'),
      h('button', { type: 'submit', id: id + '-submit' }, submit)))
  const dlg = h('dialog', { id, 'aria-labelledby': id + '-h' }, h('h2', { id: id + '-h' }, title), form)
  form.addEventListener('submit', e => {
    e.preventDefault()
    onSubmit(form)
  })
  dlg.querySelector('#' + id + '-cancel')!.addEventListener('click', () => dlg.close())
  return dlg
}

function build() {
  if (document.getElementById('rights')) return
  document.head.append(h('style', null, printCSS))
  const withdraw = dialog('withdraw-dialog', 'Record a withdrawal', [
    h('p', null, 'The person asked, by other means than the widget, to withdraw consent (objection to direct marketing, ' +
      'GDPR Art. 21(3)). A withdraw record with source "admin" and your reason is added to each site\'s chain; the ' +
      'audit log names you.'),
    h('fieldset', { id: 'w-sites' }, h('legend', null, 'Sites (none ticked = every site of the person)')),
    field('w-purposes', 'Purposes (comma-separated ids; empty = every purpose but the required ones)',
      h('input', { id: 'w-purposes', type: 'text', autocomplete: 'off', spellcheck: 'false' })),
    field('w-reason', 'Reason (who asked, how and when)', h('textarea', { id: 'w-reason', rows: 3, required: true })),
  ], 'Record the withdrawal', submitWithdrawal)
  const rectify = dialog('rectify-dialog', 'Rectify the address', [
    h('p', null, 'The person asked to correct their address or name (GDPR Art. 16). A rectify record naming the old and ' +
      'the new address is added to each site\'s chain; the old records stay as the proof of what was submitted.'),
    field('r-new-email', 'New email address', h('input', { id: 'r-new-email', type: 'text', inputmode: 'email', autocomplete: 'off', spellcheck: 'false', required: true })),
    field('r-name', 'New name (optional)', h('input', { id: 'r-name', type: 'text', autocomplete: 'off' })),
    field('r-reason', 'Reason (who asked, how and when)', h('textarea', { id: 'r-reason', rows: 3, required: true })),
  ], 'Rectify', submitRectify)
  const section = h('section', { id: 'rights', 'aria-labelledby': 'rights-h' },
    h('h2', { id: 'rights-h' }, 'Requests from the person'),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'r-withdraw' }, 'Record a withdrawal…'),
      h('button', { type: 'button', id: 'r-rectify' }, 'Rectify…'),
      h('button', { type: 'button', id: 'r-print' }, 'Print rights report')),
    h('p', { id: 'rights-msg', class: 'msg', role: 'status' }),
    h('div', { id: 'rights-report' }),
    withdraw, rectify)
  $('subject-result').append(section)
  $('r-withdraw').addEventListener('click', openWithdrawal)
  $('r-rectify').addEventListener('click', () => {
    say($('rectify-dialog-msg'), '')
    rectify.showModal()
    $('r-new-email').focus()
  })
  $('r-print').addEventListener('click', () => {
    document.body.classList.add('print-report')
    window.print()
  })
  window.addEventListener('afterprint', () => document.body.classList.remove('print-report'))
}

function openWithdrawal() {
  if (!current || !current.report) return
  const box = $('w-sites')
  box.replaceChildren(box.firstElementChild!)
  for (const s of current.report.sites) {
    box.append(h('label', { class: 'check' }, h('input', { type: 'checkbox', value: s.site, name: 'w-site' }), ' ' + s.site))
  }
  say($('withdraw-dialog-msg'), '')
  $<HTMLDialogElement>('withdraw-dialog').showModal()
  $('w-reason').focus()
}

async function submitWithdrawal() {
  if (!current) return
  const sites = Array.from(document.querySelectorAll<HTMLInputElement>('#w-sites input:checked')).map(i => i.value)
  const purposes = $<HTMLInputElement>('w-purposes').value.split(',').map(s => s.trim()).filter(Boolean)
  const reason = $<HTMLTextAreaElement>('w-reason').value
  const btn = $<HTMLButtonElement>('withdraw-dialog-submit')
  btn.disabled = true
  try {
    const ans = await sendJSON<{ records: { site: string }[] }>('POST', '/v1/admin/subjects/withdraw', { email: current.email, sites, purposes, reason })
    $<HTMLDialogElement>('withdraw-dialog').close()
    $<HTMLTextAreaElement>('w-reason').value = ''
    $<HTMLInputElement>('w-purposes').value = ''
    const email = current.email
    again(email)
    say($('rights-msg'), `Recorded ${ans.records.length} withdrawal record(s): ${ans.records.map(r => r.site).join(', ')}.`, 'ok')
  } catch (e) {
    say($('withdraw-dialog-msg'), errorText(e), 'error')
  } finally {
    btn.disabled = false
  }
}

async function submitRectify() {
  if (!current) return
  const body = {
    email: current.email,
    new_email: $<HTMLInputElement>('r-new-email').value,
    name: $<HTMLInputElement>('r-name').value,
    reason: $<HTMLTextAreaElement>('r-reason').value,
  }
  const btn = $<HTMLButtonElement>('rectify-dialog-submit')
  btn.disabled = true
  try {
    const ans = await sendJSON<{ new_email: string; reason: string }>('POST', '/v1/admin/subjects/rectify', body)
    $<HTMLDialogElement>('rectify-dialog').close()
    for (const id of ['r-new-email', 'r-name', 'r-reason']) $<HTMLInputElement>(id).value = ''
    again(ans.new_email)
    say($('rights-msg'), 'Rectified to ' + ans.new_email + '. ' + ans.reason, 'ok')
  } catch (e) {
    say($('rectify-dialog-msg'), errorText(e), 'error')
  } finally {
    btn.disabled = false
  }
}

// renderReport writes the plain summary an admin sends back to the person.
function renderReport(rep: RightsReport) {
  const out = $('rights-report')
  const parts: HTMLElement[] = [
    h('h2', null, 'Rights report for ' + (rep.email || '(erased)')),
    h('p', { class: 'note' }, `Prepared ${time(new Date().toISOString())} from the consent ledger. It lists every consent ` +
      'recorded about you, its current state, when it was given or withdrawn, and every request you made to us.'),
  ]
  const dl = h('dl', { class: 'facts' })
  facts(dl, [
    ['Addresses', rep.addresses.join(', ') || '—'],
    ['Records', String(rep.records)],
    ['First and last record', rep.first_at ? time(rep.first_at) + ' – ' + time(rep.last_at || '') : '—'],
    ['Double opt-in', rep.double_opt_in],
    ['Erased', rep.erased.records ? `${rep.erased.records} record(s): ${rep.erased.fields.join(', ')} removed` : 'nothing'],
    ['On the suppression list', rep.erased.suppressed ? 'yes: the address is never added again' : 'no'],
  ])
  parts.push(dl)
  for (const s of rep.sites) {
    parts.push(h('h3', null, 'Site ' + s.site))
    const extra: string[] = []
    if (s.confirmed_at) extra.push('confirmed (double opt-in) ' + time(s.confirmed_at))
    if (s.rectified_at) extra.push('address rectified ' + time(s.rectified_at))
    if (extra.length) parts.push(h('p', null, extra.join('; ')))
    const t = h('table', null, h('caption', null, 'Consent per purpose on ' + s.site))
    table(t, ['Purpose', 'Now', 'Given (UTC)', 'Withdrawn (UTC)', 'Record'],
      s.purposes.map(p => [p.purpose, p.state,
        p.given_at ? time(p.given_at) + (p.given_source ? ' (' + p.given_source + ')' : '') : '',
        p.withdrawn_at ? time(p.withdrawn_at) + (p.withdrawn_source ? ' (' + p.withdrawn_source + ')' : '') : '',
        p.record]))
    parts.push(h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Purposes on ' + s.site }, t))
  }
  if (rep.requests.length) {
    const t = h('table', null, h('caption', null, 'Requests recorded on your behalf'))
    table(t, ['When (UTC)', 'Site', 'Request', 'What', 'Reason', 'Record'],
      rep.requests.map(r => [time(r.at), r.site, r.event === 'rectify' ? 'rectification' : 'withdrawal',
        r.event === 'rectify' ? (r.from || '(erased)') + ' → ' + (r.to || '(erased)') : (r.purposes || []).join(', '),
        r.reason, r.record]))
    parts.push(h('h3', null, 'Requests'), h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Requests recorded on your behalf' }, t))
  }
  out.replaceChildren(...parts)
}

// showRights hangs the request actions and the report under a look-up's
// answer; lookup runs a new look-up (after a change).
export function showRights(answer: Answer | null, lookup: (email: string) => void) {
  build()
  current = answer
  again = lookup
  if (!answer || !answer.report) {
    $('rights-report').replaceChildren()
    return
  }
  renderReport(answer.report)
  const none = answer.report.sites.length === 0
  $<HTMLButtonElement>('r-withdraw').disabled = none
  $<HTMLButtonElement>('r-rectify').disabled = none
}
