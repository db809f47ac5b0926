// Package web is the controller's dashboard server: the pages journalists'
// and researchers' browsers load, and the JSON they read.
//
// It holds no data of its own and makes no decision about who may see
// what. Every request is a gRPC call to the controller's OperatorService
// carrying the operator token the browser logged in with, so the one role
// table (api's methodRoles) rules the dashboard as it rules vantagectl
// and grpcurl: a viewer's token can look, only an operator's can pause a
// campaign, whatever the page offers.
//
// The browser never holds the token. Logging in swaps it for a random
// session id in an HttpOnly, Secure, SameSite=Strict cookie; the token
// stays in this process's memory, and dies with the session (or the
// process). Every request that changes state must also carry the
// session's CSRF token, in the X-CSRF-Token header or a csrf form field.
package web
