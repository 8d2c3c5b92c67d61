"""Campaigns: continuous shaping. A campaign runs rounds of generate -> judge -> route a share to
reviewers -> calibrate the judge against them -> freeze -> train -> evaluate -> promote, each
step started by the queues (`runner`), checked before anything is created (`services`), with
the reviewers' share chosen by a policy (`routing`) and the judge fitted per criterion
(`calibration`). docs/campaigns.md explains the policy, the calibration and the verdict rule."""
