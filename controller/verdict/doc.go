// API CHANGES (announced for the scenario suite and other callers; newest
// first). The exported API below is stable from issue 4 on; changes are
// listed here.
//   - issue 11, folding: Transition carries folds_since_round (set on a
//     transition into UNSTABLE, whose From is then the state before the
//     transitions it folds) and folded_into (set by the store); new Fold
//     and MarkFolded.
//   - issue 11, the 2-round rule: a sustained outage inside an UNSTABLE
//     episode is 2 rounds UNREACHABLE in a row, always (it was one round
//     more than the episode's longest down stretch, up to 3).
//   - issue 11, quality: Config gains Quality (QualityConfig); new
//     Engine.TakeQuality (QualityPoint series); Verdict and Transition
//     carry a Reason (PARTIAL, LOSS, LATENCY).
//   - issue 11: UNSTABLE is an episode (quick recoveries held, sustained
//     outages end it); Classify reads PathEvidence.Stop (new field);
//     provisional locations are LOCATING unless fresh evidence supports
//     one.
//   - flapping: Config gains UncertainHold (replay param uncertain_hold).
//   - restart hardening: new Engine.Restore, Published, ErrRestore,
//     Engine.Resume and Engine.ReportedSince (restore.go).
//   - issue 4: Config gains QuorumLabel, BeliefUp, BeliefDown,
//     MinAvailability, UnstableWindow, UnstableFlips, UnstableCalm and
//     ResultsPerRound (zero = default). Observation gains Attempts, Hops,
//     StopReason and TriggerID. New: Engine.SetAgentLabels, Engine.Config, Engine.Healthy,
//     Hop, PathEvidence, Classify, Update (belief math), WithParams,
//     ParamNames, ErrParam, Replayer, Stats.Traces. Trace results are no
//     longer reachability evidence; they only localise.

// Package verdict turns probe observations into reachability verdicts for a
// campaign's targets, networks and scope, and into the transitions that
// make up the timeline.
//
// It exists apart from ingest and storage so the rules that decide "is this
// country reachable?" can be tested to the second and replayed over stored
// history: it is pure logic. No I/O, no goroutines, no clock of its own (the
// caller passes now), and the same inputs in the same order always give the
// same outputs. The live worker (controller/verdict/live) and Replay run
// this same code. An Engine is not safe for concurrent use; its owner
// serialises calls.
//
// # Rounds
//
// Round n covers [Start + n*Round, Start + (n+1)*Round). It closes when
// Evaluate is called with now >= its end + Grace (default Round/2; the
// controller uses max(Round/3, 1s) capped at 30s), or earlier, once the
// round has started, when it is complete: ResultsPerRound > 0 and every
// known vantage whose session is up (SetAgentConnected; a vantage first
// seen in an observation counts as up) and every vantage that reported in
// it has sent at least ResultsPerRound results for it. A connected but
// silent vantage therefore keeps the round open until Grace. Rounds close strictly in order; an
// observation for a closed round is dropped ("too old"), as is one for a
// negative round or for a round more than two rounds ahead of the latest now
// the engine has seen ("too new"). At most ceil(Grace/Round)+4 rounds (never
// more than MaxOpenRounds) are open at once. Before the first Evaluate
// (while history is re-fed) up to MaxOpenRounds rounds are kept, the oldest
// evicted first. Stretches where no vantage has fresh data are
// fast-forwarded in O(1) after one UNKNOWN round.
//
// # Observations
//
// Per vantage, target and round: answered if any ICMP or TCP result was
// REPLY, TCP_SYNACK or TCP_RST; a miss if there were results and none
// answered. Packets = the sum of the results' Attempts (adaptive retries
// included; the agent retries within the round, so a miss counts only
// after its retries). ERROR is not evidence. Trace results are not
// reachability evidence: they are kept (the latest per vantage and target,
// whatever its round) for localisation. ICMP silent while TCP answers is
// answered, with location FILTERED.
//
// # Belief
//
// Per (vantage, target), as in Trinocular: a belief B = P(reachable),
// PriorBelief 0.5 at first, updated once per closed round in which the
// vantage has a result for the target, with L = P(evidence | reachable):
// answered: L = A of the answering family, B' = B*L / (B*L +
// (1-B)*FalseReply 1e-4); miss: L = prod over probe families (ICMP; TCP)
// of (1-A_f)^packets_f, times FalseUnreachable 0.01 if an ICMP destination
// unreachable came back, B' = B*L / (B*L + (1-B)*(1-FalseReply)); then
// clamped to [BeliefMin 0.01, BeliefMax 0.99] so one clear round can always
// cross a threshold. A_f is the learned availability of a family: P(a
// packet is answered | reachable) = decayed answered results / decayed
// packets (Beta(1,1) prior, decay AvailabilityDecay 0.95 per round, capped
// at AvailabilityMax 0.99); per family so that a TCP port that never
// answers does not dilute echo misses; the target's A is the larger one.
// Availability learns only from rounds that began with B >= BeliefUp and
// did not end with B <= BeliefDown (or before the target ever answered), so
// outages and uncertain stretches do not erode it. The vantage's view of the target: up if B >= BeliefUp
// (0.9) and its latest round for the target was not a miss, down if B <=
// BeliefDown (0.1), otherwise uncertain; uncertain, never-observed and A < MinAvailability (0.1)
// pairs are not evidence. With a clean path (A ~ 0.99) one missed round of
// two or more packets (an echo and its retry, or echo + TCP) or a single
// destination unreachable takes B from 0.99 below 0.1, and one answer
// takes it from 0.01 above 0.9; a single lost packet only makes it
// uncertain, and on a lossy path (A ~ 0.8) so does a full miss.
//
// # Vantages and quorum
//
// A vantage counts for round n if its session was not down at the round's
// end (SetAgentConnected) and it reported in one of the last FreshRounds
// rounds (default 1; the controller uses 3); others are left out with
// reason "session down" or "no fresh data". A counted vantage is unhealthy
// and left out when (a) in its latest round it saw >= 90% of the host
// targets it has results for down while a strict majority of the other
// counted vantages with host results saw < 50% down ("sees nearly
// everything down while others don't"), or (b) its control targets (role
// CONTROL) fail: at least one of its firm control views is down and down
// ones are at least half of them, counting only controls some counted
// vantage sees up (a control nobody reaches is the control's problem).
// Quorum counts distinct groups of healthy vantages: vantages sharing the
// value of QuorumLabel (default "provider") are one group; vantages without
// it are groups of their own; "-" makes every vantage its own group. Fewer
// groups than Quorum: every subject is UNKNOWN. Every verdict's evidence
// lists every known vantage with its status, reason and view.
//
// # States
//
// Target (raw, per round): up = groups with a healthy vantage viewing it
// up, down likewise. up+down < Quorum: UNKNOWN; down = 0: REACHABLE;
// up = 0: UNREACHABLE; up >= Quorum and down < Quorum: REACHABLE (the
// dissent is outvoted and noted); otherwise DEGRADED. Network over its HOST
// targets and scope over its networks, ignoring UNKNOWN children: all
// REACHABLE: REACHABLE; none REACHABLE or DEGRADED: UNREACHABLE; otherwise
// DEGRADED; no known child: UNKNOWN. Upstream, border and control targets
// get target verdicts only.
//
// UNSTABLE (every level): an episode. A flip is a round whose raw state is
// on the other side of the REACHABLE boundary from the previous known raw
// state (REACHABLE <-> DEGRADED/UNREACHABLE; UNKNOWN rounds are skipped;
// DEGRADED <-> UNREACHABLE is not a flip). The first flip out of REACHABLE
// is published at once (it may be a blackout). A recovery less than 3
// rounds (shortOutage) after the flip that left REACHABLE is held: the
// subject keeps its bad state (noted "recovering: ...") for up to 3 rounds
// (flapHold); a flip back in that time makes it UNSTABLE, otherwise the
// recovery is published with its own onset. So flapping is UNSTABLE within
// 3 rounds of its second change, and an episode is at most three scope
// transitions: the first flap's, into UNSTABLE (its onset the first
// flap's, the first flap's folded into it: see Folding) and out of it, two
// on the folded view. A subject with >= UnstableFlips (4) flips within
// the last UnstableWindow (10) rounds is UNSTABLE too. An UNSTABLE subject
// stays so, emitting nothing, until UnstableCalm (5) rounds pass without a
// flip (it then takes its raw state, onset that of the last flip), or
// until its raw state has been UNREACHABLE for 2 rounds in a row
// (sustained): a sustained outage, published as UNREACHABLE in its second
// round, with its onset. So the flaps of an episode are one round down;
// two rounds down is an outage, wherever it falls. Leaving clears the
// flip history, so re-entering needs fresh flips. A raw UNKNOWN from
// quorum lost always wins. A raw
// UNKNOWN for lack of firm beliefs while the quorum of vantages holds
// (routes changing mid-round leave every vantage's belief in flux) is no
// evidence of a change: the subject keeps its published state and flip
// history for up to UncertainHold (3) such rounds in a row, so a flapping
// episode is not cut in two, then it is UNKNOWN.
//
// # Transitions and onset
//
// Every change of the published state (including the first UNSPECIFIED ->
// X) yields one Transition for round n, the first round in the new state:
// onset_earliest is the latest SentAt in the last round in the old state
// (its start if none; round n's start for the first transition),
// onset_latest the earliest SentAt in round n (its end if none); the onset
// lies in that interval, its error bar. Into UNSTABLE, the onset is that
// of the first flip in the window (when the flapping began); out of it,
// that of the last flip (since when the state has held). SentAt values more
// than a round outside their round are ignored. Ids are left 0.
//
// # Folding
//
// The first flap of an episode is published at once, since it may be a
// blackout; the timeline a reader quotes should still show one episode.
// So the transition into UNSTABLE folds the transitions its subject
// published since the episode's onset round (st.since, the first flip in
// the window; the engine keeps each subject's transitions of the last
// UnstableWindow rounds): its From is the state published before the first
// of them (so it reads REACHABLE -> UNSTABLE, onset at the first flap),
// FoldsSinceRound is the onset round, and its first note names what it
// folds ("folds the UNREACHABLE published at round 20: the episode's first
// flap"). Nothing published since the onset: FoldsSinceRound 0, From the
// state published. Nothing is deleted or rewritten: Fold gives the folded
// view of a list of transitions, and the store marks the folded ones
// (folded_into) and leaves them out of the timeline unless asked.
//
// # Location
//
// REACHABLE: NONE, or FILTERED (target: ICMP silent while TCP answers;
// network and scope: every REACHABLE child is FILTERED). DEGRADED or
// UNREACHABLE: from traces when there are any (see Classify: it reads the
// traces' stop reasons, so a path that dies at an upstream router that
// itself answers "destination unreachable" is UPSTREAM, and so are the
// paths that go silent at that router, its unreachables rate-limited;
// VANTAGE only when a strict minority of the vantages fail while the
// others reach the targets) of healthy vantages toward the subject's
// non-REACHABLE host targets (the target itself at target level), taken
// in or after the round before the subject turned bad; LastResponsiveHop
// is the most common last responsive hop of the failing paths. Without
// such traces a location is published only when fresh evidence supports
// it: a DEGRADED target is PATH_SPECIFIC (this round's vantages
// disagree); an unanswering upstream or border target is UPSTREAM; every
// subject is UPSTREAM when every upstream/border target with a verdict is
// UNREACHABLE this round; an UNSTABLE subject whose traces told a story
// (location and hop) during the episode, and whose routers answer and
// whose host probes fail as they did then (the path signature: same
// upstream targets alive, "destination unreachable" or silence alike),
// takes that location again (the fault repeating; outside an episode
// probes alone cannot tell a border cut from an upstream withdrawal).
// Otherwise it is LOCATING ("awaiting traces"): an upstream that still
// answers says nothing about where the paths die (an upstream blackout
// leaves its routers answering), so it is never read as TARGET_NETWORK.
// When traces then move a DEGRADED or UNREACHABLE subject's location away
// from the one its transition carried (LOCATING included), and the new
// location holds for two closed rounds, the engine emits a refinement: a
// Transition with From == To, the state's onset, the new location and a
// note "location refined from X to Y by traces". So the timeline, not
// only the live verdict, says where the path dies. A location not from
// traces that changes emits nothing (not news), and refinements never
// trigger traces.
//
// # Quality
//
// Per (vantage, network) and round the engine keeps the probes (scheduled
// ICMP and TCP results that are evidence, i.e. not ERROR), the first-try
// answers among them (an up outcome with Attempts <= 1: an answer only at
// the adaptive retry, or none, is a first-try miss, so retries do not hide
// loss), the RTTs of the answers and the answers per protocol (icmp, tcp,
// and trace: completed traces). A (target, probe family) that no vantage
// gets an answer from in the round (ICMP filtered, a closed port, a target
// down) is left out of the probes: that is reachability, not loss. At
// round close each (vantage, network) with data gives a QualityPoint
// (loss = 1 - first-try answers / probes, RTT p50 and p90 by nearest
// rank), taken by TakeQuality.
//
// A network's (and the scope's, over all networks) agreed loss and RTT p50
// in a round: per healthy vantage group (QuorumLabel) the pooled loss and
// the p50 of its RTTs, then the value that k groups reach or exceed, k =
// max(Quorum, a strict majority of the groups with data); fewer than
// Quorum groups with data is no evidence. One lossy vantage is outvoted.
// Baselines: the loss baseline (from 0) and the RTT baseline (a plain mean
// of the first 3 calm rounds, then) are EWMAs (weight 0.1) of calm
// REACHABLE rounds outside an episode. A round is lossy when the agreed
// loss > baseline + Quality.Loss (0.1), slow when the agreed p50 > baseline
// x LatencyFactor (2.0) and > baseline + LatencyMin (20ms, after the
// 3-round warm-up); calm when loss < baseline + LossClear (0.05) and the
// p50 < baseline x LatencyClearFactor (1.5) (or within LatencyMin of
// it). Rounds (2) lossy (or slow) rounds in a row start an episode
// (REASON_LOSS before REASON_LATENCY), ClearRounds (2) calm rounds in a
// row end it; rounds in between hold it (hysteresis). REACHABLE and
// DEGRADED rounds are evidence; an UNREACHABLE round ends the episode (the
// outage supersedes it); UNKNOWN changes nothing. During an episode a
// REACHABLE network or scope is DEGRADED with reason LOSS (or LATENCY),
// location UNSPECIFIED and a note with the figures; the scope is also
// DEGRADED for a network's episode. A subject DEGRADED for reachability
// (some children down) has REASON_PARTIAL, or the quality reason during an
// episode; when it turns from PARTIAL to LOSS or LATENCY while DEGRADED, a
// refinement (From == To, note "reason refined from PARTIAL to LOSS") is
// emitted. Quality.Off keeps the points and drops the rule. When quality
// is fine, states are exactly those of reachability.
//
// # Restore
//
// A fresh engine can carry on from a previous one's published state
// (Restore, before the first Observe): every subject takes the state,
// onset, first round and location of its newest stored transitions, so its
// next transition is a change from that state (never UNSPECIFIED -> the
// same state) and an ongoing episode keeps its onset; those transitions
// are remembered for folding, so an episode entered after the restart
// folds a first flap published before it. Rounds before the
// resume round were evaluated by the previous engine: re-fed history
// closes them as usual for beliefs, availability and flip history, but
// they publish nothing and leave the published states alone. The caller
// (controller/verdict/live) finds the resume round and feeds the history.
//
// # Cost
//
// Observe is two map lookups and a few stores; closing a round is
// O(vantages x targets). Memory is the open rounds plus, per vantage, its
// latest round, its beliefs (12 bytes per target) and its latest trace per
// traced target, bounded by vantages x targets, and, per subject, the
// transitions it published in the last UnstableWindow rounds (at most one
// a round, 24 bytes each) for folding.
package verdict
