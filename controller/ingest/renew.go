package ingest

import (
	"context"
	"log/slog"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Renew exchanges a CSR for a new client certificate of the agent that
// authenticated with its current one (fleet.Renew).
func (s *Server) Renew(ctx context.Context, req *vantagev1.RenewRequest) (*vantagev1.RenewResponse, error) {
	r, err := s.cfg.Fleet.Renew(ctx, req.GetCsrDer())
	if err != nil {
		return nil, agentService.Status(s.log, "Renew", err)
	}
	return &vantagev1.RenewResponse{CertificatePem: r.CertificatePEM, CaBundlePem: r.CABundlePEM}, nil
}

// renewAdvice retires the agent's previous certificate once its renewed one
// is in use, and returns the RenewAdvice to send first when the
// certificate of this session should be renewed (nil otherwise). A store
// failure only costs the advice: the session goes on.
func (ss *session) renewAdvice(ctx context.Context) *vantagev1.ControllerMessage {
	reason, err := ss.s.cfg.Fleet.SessionOpened(ctx, ss.agent.ID)
	if err != nil {
		ss.s.log.Warn("agent certificate check failed", slog.String("agent", ss.agent.ID), slog.Any("error", err))
		return nil
	}
	if reason == "" {
		return nil
	}
	ss.s.log.Info("agent advised to renew its certificate", slog.String("agent", ss.agent.ID), slog.String("reason", reason))
	return &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Renew{Renew: &vantagev1.RenewAdvice{Reason: reason}}}
}
