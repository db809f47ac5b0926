// Package rpcerrtest checks an error table against the packages it covers,
// from their source: every exported sentinel (a package-level Err... var)
// and every exported error type must appear in the table, so that a
// sentinel added without a row fails its service's test instead of
// reaching clients as "internal error".
package rpcerrtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Rows names the vars in File (a path relative to the test's directory)
// whose literals hold a table's rows: the table itself and the row groups
// it joins.
type Rows struct {
	File string
	Vars []string
}

// Covered fails t unless the rows name every exported sentinel and error
// type of the packages in dirs (paths relative to the test's directory).
// A file's own package refers to its sentinels unqualified.
func Covered(t testing.TB, rows []Rows, dirs ...string) {
	t.Helper()
	named := map[string]bool{}
	var vars []string
	for _, r := range rows {
		for _, v := range r.Vars {
			for name := range tableNames(t, r.File, v) {
				named[name] = true
			}
			vars = append(vars, v)
		}
	}
	var missing []string
	for _, dir := range dirs {
		for _, name := range errorNames(t, dir) {
			if !named[name] {
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("the table (%s) has no row for %s; give each a code and a message policy",
			strings.Join(vars, ", "), strings.Join(missing, ", "))
	}
}

// tableNames returns the names the literal of tableVar in file mentions,
// qualified as "pkg.Name".
func tableNames(t testing.TB, file, tableVar string) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	own := f.Name.Name
	names := map[string]bool{}
	found := false
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name != tableVar || i >= len(vs.Values) {
					continue
				}
				found = true
				ast.Inspect(vs.Values[i], func(n ast.Node) bool {
					switch x := n.(type) {
					case *ast.SelectorExpr:
						if id, ok := x.X.(*ast.Ident); ok {
							names[id.Name+"."+x.Sel.Name] = true
						}
						return false
					case *ast.Ident:
						names[own+"."+x.Name] = true
					}
					return true
				})
			}
		}
	}
	if !found {
		t.Fatalf("%s: no var %s", file, tableVar)
	}
	return names
}

// errorNames returns the exported sentinels and error types of the
// package in dir (its non-test files), qualified as "pkg.Name".
func errorNames(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		pkg := f.Name.Name
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				if d.Tok != token.VAR {
					continue
				}
				for _, s := range d.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
							out = append(out, pkg+"."+n.Name)
						}
					}
				}
			case *ast.FuncDecl:
				if name := errorType(d); name != "" {
					out = append(out, pkg+"."+name)
				}
			}
		}
	}
	return out
}

// errorType returns the exported receiver type of an Error() string
// method, or "".
func errorType(d *ast.FuncDecl) string {
	if d.Name.Name != "Error" || d.Recv == nil || len(d.Recv.List) != 1 || d.Type.Params.NumFields() != 0 ||
		d.Type.Results.NumFields() != 1 {
		return ""
	}
	typ := d.Recv.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if id, ok := typ.(*ast.Ident); ok && id.IsExported() {
		return id.Name
	}
	return ""
}
