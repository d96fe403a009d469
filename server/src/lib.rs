//! fabricsync: keeps a Hedgehog Open Network Fabric in sync with Git, over gRPC.
