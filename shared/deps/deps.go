// Package deps checks that a constructor was handed every collaborator it
// needs. The functions' constructors take their collaborators in a Deps struct
// whose every field is required; a forgotten one is a wiring mistake, so it
// panics at construction, naming the field, instead of as a nil dereference on
// some later request.
package deps

import (
	"fmt"
	"reflect"
	"strings"
)

// Check panics when a field of the struct d that can be nil (pointer,
// interface, func, map, slice, channel) is nil, or is an interface holding a
// nil pointer. owner names the constructor in the message.
func Check(owner string, d any) {
	if missing := Missing(d); len(missing) > 0 {
		panic(fmt.Sprintf("%s: missing %s", owner, strings.Join(missing, ", ")))
	}
}

// Missing lists the nil fields of the struct d, as "Deps.Name".
func Missing(d any) []string {
	v := reflect.ValueOf(d)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		panic(fmt.Sprintf("deps: want a struct, got %T", d))
	}
	var missing []string
	for i := range v.NumField() {
		if absent(v.Field(i)) {
			missing = append(missing, v.Type().Name()+"."+v.Type().Field(i).Name)
		}
	}
	return missing
}

func absent(f reflect.Value) bool {
	switch f.Kind() {
	case reflect.Interface:
		if f.IsNil() {
			return true
		}
		e := f.Elem()
		return e.Kind() == reflect.Pointer && e.IsNil()
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan:
		return f.IsNil()
	}
	return false
}
