package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ListAgents returns a page of agents with their live session and health.
func (s *Server) ListAgents(ctx context.Context, req *vantagev1.ListAgentsRequest) (*vantagev1.ListAgentsResponse, error) {
	size, err := boundedLimit("page_size", req.GetPageSize(), DefaultAgentPage, MaxAgentPage)
	if err != nil {
		return nil, err
	}
	afterName, afterID, err := parseAgentPageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	as, err := s.cfg.Store.ListAgentsPage(ctx, afterName, afterID, size+1)
	if err != nil {
		return nil, err
	}
	out := &vantagev1.ListAgentsResponse{}
	if len(as) > size {
		as = as[:size]
		last := as[size-1]
		out.NextPageToken = agentPageToken(last.Name, last.ID)
	}
	for _, a := range as {
		info, err := s.agentInfo(ctx, a)
		if err != nil {
			return nil, err
		}
		out.Agents = append(out.Agents, info)
	}
	return out, nil
}

// agentPageToken is the opaque cursor after the agent (name, id).
func agentPageToken(name, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(name + "\x00" + id))
}

func parseAgentPageToken(tok string) (name, id string, err error) {
	if tok == "" {
		return "", "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if len(tok) > 256 || err != nil {
		return "", "", fmt.Errorf("%w: page_token: not a token this controller gave", rpcerr.ErrInvalid)
	}
	name, id, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return "", "", fmt.Errorf("%w: page_token: not a token this controller gave", rpcerr.ErrInvalid)
	}
	return name, id, nil
}
