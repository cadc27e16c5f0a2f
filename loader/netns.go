package loader

// NetnsCookie identifies the network namespace the calling thread runs in, as the state
// directories and the writers' lock name it (netns-<cookie>): other per-namespace state of xsyn
// is keyed the same way, so that it can never be mistaken for a later namespace's.
func NetnsCookie() (uint64, error) { return netnsCookie() }
