package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AuditEntry is one admin action, or one the ledger took by itself (Token
// "system"): a purge, a refused signup of an erased address.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Token  string    `json:"token"` // the admin token's name
	Action string    `json:"action"`
	Detail string    `json:"detail"`
}

// systemActor is the Token of entries the ledger writes itself.
const systemActor = "system"

// Audit appends an entry. Detail must not hold personal data.
func (s *Store) Audit(token, action, detail string) error {
	return s.update(func(tx *bolt.Tx) error { return putAudit(tx, s.now(), token, action, detail) })
}

// putAudit appends an entry under a key of its time and the bucket's next
// sequence, so entries sort by time and never collide.
func putAudit(tx *bolt.Tx, at time.Time, token, action, detail string) error {
	b := tx.Bucket(bucketAudit)
	b.FillPercent = appendFill
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(AuditEntry{At: at.UTC(), Token: token, Action: action, Detail: detail})
	if err != nil {
		return err
	}
	key := binary.BigEndian.AppendUint64(u64(uint64(max(at.UnixNano(), 0))), seq)
	return b.Put(key, v)
}

// AuditLog calls fn for each entry from from (inclusive) to to (exclusive;
// zero times are open), oldest first, reading in bounded chunks.
func (s *Store) AuditLog(from, to time.Time, fn func(AuditEntry) error) error {
	var start, end []byte
	if !from.IsZero() {
		start = u64(uint64(max(from.UnixNano(), 0)))
	}
	if !to.IsZero() {
		end = u64(uint64(max(to.UnixNano(), 0)))
	}
	return scanChunks(s.db, func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(bucketAudit) }, start, end, func(k, v []byte) (AuditEntry, bool, error) {
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return e, false, fmt.Errorf("%w: audit entry: %v", ErrCorrupt, err)
		}
		return e, true, nil
	}, fn)
}
