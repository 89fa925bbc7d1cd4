// One person's records: look-up (access), a JSON copy to hand over
// (portability) and erasure after a confirmation step.
import { getJSON, q, request, saveBlob } from './api'
import { $, Child, facts, say, table, time, today } from './dom'
import { errorText } from './state'
import { showRights } from './rights'
import { ConsentRecord } from './types'

interface SubjectAnswer {
  email: string
  state: Record<string, unknown>
  records: ConsentRecord[]
}

interface ErasureReport {
  email: string
  records: number
  removed: string[]
  kept: string[]
  reason: string
  suppressed_at: string
}

let current: SubjectAnswer | null = null

// field reads the subject state in snake_case or Go's field names.
const field = (st: Record<string, unknown>, snake: string, go: string) => st[snake] !== undefined ? st[snake] : st[go]

async function lookup() {
  const email = ($('s-email') as HTMLInputElement).value.trim()
  const msg = $('subject-msg')
  $('erase-report').hidden = true
  say(msg, 'Looking up…')
  try {
    current = await getJSON<SubjectAnswer>('/v1/admin/subjects?' + q({ email }))
  } catch (e) {
    current = null
    $('subject-result').hidden = true
    say(msg, errorText(e), 'error')
    return
  }
  const st = current.state || {}
  const recs = current.records
  $('s-heading').textContent = 'Records of ' + current.email
  const purposes = (field(st, 'purposes', 'Purposes') || {}) as Record<string, Record<string, string>>
  facts($('s-state'), [
    ['Records', String(recs.length)],
    ['Double opt-in', String(field(st, 'double_opt_in', 'DoubleOptIn') || 'none')],
    ['Suppressed (erased before)', field(st, 'suppressed', 'Suppressed') ? 'yes' : 'no'],
    ...Object.keys(purposes).map((site): [string, Child] => [
      'Consent now on ' + site,
      Object.keys(purposes[site]).map(p => p + ': ' + purposes[site][p]).join(', '),
    ]),
  ])
  table(
    $<HTMLTableElement>('s-records'),
    ['Recorded (UTC)', 'Site', 'Event', 'Source', 'Choices', 'Country', 'Regime', 'Notice', 'Erased', 'Id'],
    recs.map(r => [time(r.recorded_at), r.site, r.event, r.source,
      Object.keys(r.choices || {}).map(k => k + ': ' + r.choices[k]).join(', '),
      r.country, r.regime, r.notice_version, r.erased ? 'yes' : '', r.id]),
  )
  $('subject-result').hidden = false
  showRights(current, email => {
    ;($('s-email') as HTMLInputElement).value = email
    lookup()
  })
  ;($('s-erase') as HTMLButtonElement).disabled = false
  say(msg, recs.length ? `${recs.length} record${recs.length === 1 ? '' : 's'} found.` : 'No record about this address.')
}

function askErase() {
  if (!current) return
  $('erase-h').textContent = 'Erase ' + current.email + '?'
  $('erase-desc').textContent =
    `This removes the email address, name, visitor id, IP address and user agent from ${current.records.length} ` +
    'record(s) on every site, and puts the address on the suppression list so that it is never silently added again. ' +
    'The non-personal proof (times, purposes and their states, notice version and hash, the hash chain) is kept for ' +
    'the defence of legal claims, as GDPR Art. 17(3)(e) allows.'
  const dlg = $<HTMLDialogElement>('erase-dialog')
  dlg.showModal()
  $('erase-cancel').focus()
}

async function erase() {
  const dlg = $<HTMLDialogElement>('erase-dialog')
  if (!current) return dlg.close()
  const msg = $('subject-msg')
  const btn = $<HTMLButtonElement>('erase-confirm')
  btn.disabled = true
  try {
    const r = await request('DELETE', '/v1/admin/subjects?' + q({ email: current.email }))
    const rep: ErasureReport = await r.json()
    dlg.close()
    facts($('erase-facts'), [
      ['Address', rep.email],
      ['Records erased', String(rep.records)],
      ['Removed', rep.removed.join(', ')],
      ['Kept', rep.kept.join(', ')],
      ['Why', rep.reason],
      ['On the suppression list since', time(rep.suppressed_at)],
    ])
    $('subject-result').hidden = true
    $('erase-report').hidden = false
    $('erase-report-h').focus()
    say(msg, 'Erased ' + rep.email + '.', 'ok')
    current = null
  } catch (e) {
    dlg.close()
    say(msg, errorText(e), 'error')
  } finally {
    btn.disabled = false
  }
}

export function init() {
  $('subject-form').addEventListener('submit', e => {
    e.preventDefault()
    lookup()
  })
  $('s-download').addEventListener('click', () => {
    if (!current) return
    const blob = new Blob([JSON.stringify(current, null, 2) + '\n'], { type: 'application/json' })
    saveBlob(blob, `assent-subject-access-${today()}.json`)
    say($('subject-msg'), 'Downloaded the access copy.', 'ok')
  })
  $('s-erase').addEventListener('click', askErase)
  $('erase-cancel').addEventListener('click', () => {
    $<HTMLDialogElement>('erase-dialog').close()
    $('s-erase').focus()
  })
  $('erase-confirm').addEventListener('click', erase)
}

export function show() {}
