package web

import (
	"embed"
	"io/fs"
	"net/http"
)

// The front end's bundle (ui/, built by make web with the versions in
// ui/package-lock.json) is checked in like the generated protos and
// embedded: the controller serves every file a page loads, and nothing is
// fetched from anywhere else at run time.
//
//go:embed static
var staticFiles embed.FS

func staticHandler() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache") // revalidate: names carry no hash
		files.ServeHTTP(w, r)
	})
}
