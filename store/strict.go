package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// CheckSiteKeys refuses a site config (JSON) holding a key that Site does
// not have, anywhere in it, naming the key by its path
// (signup_triggers.scroll_percnt): encoding/json would drop it silently and
// the site owner would never learn why the setting does nothing. Keys match
// exactly, case included. The texts are free-form (a site's texts are merged
// over the built-in ones key by key) and are not checked here. A JSON value
// of the wrong type is left for json.Unmarshal to report.
func CheckSiteKeys(b []byte) error {
	return checkKeys(b, reflect.TypeOf(Site{}), "")
}

func checkKeys(b []byte, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	b = bytes.TrimSpace(b)
	switch {
	case t == rawMessageType || len(b) == 0:
		return nil
	case t.Kind() == reflect.Struct && b[0] == '{':
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil {
			return nil
		}
		fields := jsonFields(t)
		for k, v := range obj {
			f, ok := fields[k]
			if !ok {
				names := make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
				sort.Strings(names)
				return invalid(join(path, k), "unknown key; the keys here are %s", strings.Join(names, ", "))
			}
			if err := checkKeys(v, f, join(path, k)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && b[0] == '[':
		var list []json.RawMessage
		if json.Unmarshal(b, &list) != nil {
			return nil
		}
		for i, v := range list {
			if err := checkKeys(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && b[0] == '{':
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil {
			return nil
		}
		for k, v := range obj {
			if err := checkKeys(v, t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps a struct's JSON names to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
