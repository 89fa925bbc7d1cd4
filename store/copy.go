package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sink receives everything a ledger holds, to copy it to another backend
// (`assent ledger copy`): the keys first, then sites and notices, each
// site's records in chain order followed by its chain head, then the rest.
// Records arrive in their stored encoding, so their ids, hashes and
// receipts stay as they are.
type Sink interface {
	Keys(Keys) error
	Site(Site) error
	Notice(texts []byte) error
	Record(r *StoredRecord, blob []byte) error
	Chain(site string, count uint64, last, hash []byte) error
	OptIn(subject, state []byte) error
	Suppression(subject []byte, at time.Time, reason string) error
	Token(name, hash string, role Role, createdAt time.Time) error
	User(email string, role Role, hash string, createdAt, passwordChangedAt time.Time) error
	Audit(AuditEntry) error
	OutboxItem(it OutboxItem, subject []byte) error
}

// CopyTo hands the whole ledger to sink in one read transaction, so the
// copy is consistent. Console sessions are not copied: people sign in again.
func (s *Store) CopyTo(sink Sink) error {
	return guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error { return copyTx(tx, s.Keyring, sink) })
	})
}

func copyTx(tx *bolt.Tx, k *Keyring, sink Sink) error {
	corrupt := func(what string, err error) error { return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err) }
	if err := sink.Keys(k.Keys()); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSites).ForEach(func(key, v []byte) error {
		var site Site
		if err := json.Unmarshal(v, &site); err != nil {
			return corrupt("site "+string(key), err)
		}
		return sink.Site(site)
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketNotices).ForEach(func(_, v []byte) error { return sink.Notice(v) }); err != nil {
		return err
	}
	if err := tx.Bucket(bucketChains).ForEach(func(key, v []byte) error {
		site := string(key)
		head, err := decodeHead(v)
		if err != nil {
			return corrupt("chain head of "+site, err)
		}
		if b := tx.Bucket(bucketRecords).Bucket(key); b != nil {
			if err := b.ForEach(func(id, blob []byte) error {
				r, err := decodeRecord(site, id, blob)
				if err != nil {
					return corrupt("record "+formatID(id)+" of site "+site, err)
				}
				return sink.Record(&StoredRecord{r: r}, blob)
			}); err != nil {
				return err
			}
		}
		return sink.Chain(site, head.count, head.last, head.hash)
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketOptIn).ForEach(func(key, v []byte) error { return sink.OptIn(key, v) }); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSuppression).ForEach(func(key, v []byte) error {
		var sup suppression
		if err := json.Unmarshal(v, &sup); err != nil {
			return corrupt("suppression entry", err)
		}
		return sink.Suppression(key, sup.At, sup.Reason)
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketTokens).ForEach(func(key, v []byte) error {
		var t storedToken
		if err := json.Unmarshal(v, &t); err != nil {
			return corrupt("token "+string(key), err)
		}
		return sink.Token(string(key), t.Hash, orAdmin(t.Role), t.CreatedAt)
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUsers).ForEach(func(key, v []byte) error {
		var u storedUser
		if err := json.Unmarshal(v, &u); err != nil {
			return corrupt("user "+string(key), err)
		}
		return sink.User(string(key), u.Role, u.Hash, u.CreatedAt, u.PasswordChangedAt)
	}); err != nil {
		return err
	}
	if err := tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return corrupt("audit entry", err)
		}
		return sink.Audit(e)
	}); err != nil {
		return err
	}
	o, err := openOutbox(tx)
	if err != nil {
		return err
	}
	return o.items.ForEach(func(key, _ []byte) error {
		if len(key) != 8 {
			return corrupt("outbox item key", fmt.Errorf("%d bytes", len(key)))
		}
		it, err := o.get(key)
		if err != nil {
			return err
		}
		return sink.OutboxItem(it, it.subject)
	})
}
