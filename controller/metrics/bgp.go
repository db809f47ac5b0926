package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-net/vantage/controller/bgp/record"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// BGPSource is the routing view (*bgp.RIB implements it).
type BGPSource interface {
	AllStates(campaign string, t time.Time) []*vantagev1.BgpPrefixState
	Peers(t time.Time) []*vantagev1.BgpPeer
}

// BGPRecorderSource gives the BGP recorder's counters (*record.Recorder).
type BGPRecorderSource interface {
	Stats() record.Stats
}

// bgpCollector reads the routing view's state of every monitored prefix
// and its peers at each scrape, like the verdicts: a prefix no campaign
// monitors any more stops being reported.
type bgpCollector struct {
	rib      BGPSource
	rec      BGPRecorderSource
	now      func() time.Time
	vis      *prometheus.Desc
	rate     *prometheus.Desc
	baseline *prometheus.Desc
	peers    *prometheus.Desc
	recorded *prometheus.Desc
	dropped  *prometheus.Desc
}

func newBGPCollector(rib BGPSource, rec BGPRecorderSource, now func() time.Time) *bgpCollector {
	labels := []string{"campaign", "network", "prefix"}
	return &bgpCollector{rib: rib, rec: rec, now: now,
		vis: prometheus.NewDesc("vantage_bgp_visibility",
			"Share (0..1) of the full-feed BGP peers with a session up that have a route to the monitored prefix (or a covering one); visible above 0.5 (IODA's rule), 0 with no peer.",
			labels, nil),
		rate: prometheus.NewDesc("vantage_bgp_updates_per_minute",
			"BGP updates (announcements and withdrawals) of the monitored prefix and its more specifics per minute per full-feed peer, over the last minute.",
			labels, nil),
		baseline: prometheus.NewDesc("vantage_bgp_baseline_updates_per_minute",
			"The monitored prefix's own baseline: its BGP updates per minute per full-feed peer over the hour before the last minute.",
			labels, nil),
		peers: prometheus.NewDesc("vantage_bgp_peers",
			"BGP routing views (collector peers, BMP-monitored peers, MRT peers) by session state: established or down.",
			[]string{"state"}, nil),
		recorded: prometheus.NewDesc("vantage_bgp_updates_recorded_total",
			"BGP updates of monitored prefixes written to the store since the controller started.", nil, nil),
		dropped: prometheus.NewDesc("vantage_bgp_updates_dropped_total",
			"BGP updates and peer events kept in the routing view but not stored (the recorder's queue was full, or the store refused the batch).", nil, nil),
	}
}

func (c *bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.vis, c.rate, c.baseline, c.peers, c.recorded, c.dropped} {
		ch <- d
	}
}

func (c *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	if c.rib != nil {
		for _, s := range c.rib.AllStates("", now) {
			l := []string{s.GetCampaign(), s.GetNetwork(), s.GetPrefix()}
			ch <- prometheus.MustNewConstMetric(c.vis, prometheus.GaugeValue, s.GetVisibility(), l...)
			ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, s.GetUpdatesPerMinute(), l...)
			ch <- prometheus.MustNewConstMetric(c.baseline, prometheus.GaugeValue, s.GetBaselinePerMinute(), l...)
		}
		states := map[string]int{"established": 0, "down": 0}
		for _, p := range c.rib.Peers(now) {
			states[p.GetState()]++
		}
		for st, n := range states {
			ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(n), st)
		}
	}
	if c.rec != nil {
		s := c.rec.Stats()
		ch <- prometheus.MustNewConstMetric(c.recorded, prometheus.CounterValue, float64(s.Updates))
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.Dropped))
	}
}
