package mqttgateway

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
)

// Caddy's documentation of a module is generated from the doc comments of its
// JSON config fields, so an undocumented field is an option users cannot
// learn about. This walks the module's config types from Handler, as encoding/json
// sees them, and requires a doc comment on each of the module's own fields.
func TestEveryConfigFieldIsDocumented(t *testing.T) {
	const modulePath = "github.com/caddy-mqtt/mqttgateway"
	docs := map[string]map[string]bool{} // "pkgpath.Type" → field name → documented
	parsed := map[string]bool{}
	parse := func(pkgPath string) {
		if parsed[pkgPath] {
			return
		}
		parsed[pkgPath] = true
		dir := filepath.FromSlash("." + strings.TrimPrefix(pkgPath, modulePath))
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				spec, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := spec.Type.(*ast.StructType)
				if !ok {
					return true
				}
				fields := map[string]bool{}
				for _, fld := range st.Fields.List {
					for _, name := range fld.Names {
						fields[name.Name] = fld.Doc != nil && strings.TrimSpace(fld.Doc.Text()) != ""
					}
				}
				docs[pkgPath+"."+spec.Name.Name] = fields
				return true
			})
		}
	}

	seen := map[reflect.Type]bool{}
	checked := 0
	defer func() { t.Logf("%d config fields checked", checked) }()
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || !strings.HasPrefix(typ.PkgPath(), modulePath) {
			return
		}
		seen[typ] = true
		parse(typ.PkgPath())
		fields, ok := docs[typ.PkgPath()+"."+typ.Name()]
		if !ok {
			t.Fatalf("no source found for %s", typ)
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			if f.Anonymous && tag == "" {
				walk(f.Type) // encoding/json promotes its fields: theirs are the docs
				continue
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			checked++
			if !fields[f.Name] {
				t.Errorf("%s.%s (JSON %q) has no doc comment", typ, f.Name, name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(Handler{}))
	// The walk must reach the nested config, or passing would prove nothing.
	for _, nested := range []any{session.BrokerConfig{}, session.BrokerTLS{}, session.EmbeddedConfig{}, hookapi.Chain{}} {
		if !seen[reflect.TypeOf(nested)] {
			t.Errorf("the walk from Handler did not reach %T", nested)
		}
	}
}
