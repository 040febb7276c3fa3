/// Host-wide event counters, named after /proc/vmstat.
public struct VMStat: Equatable, Sendable {
    public var pgfault = 0
    public var pgreuse = 0
    public var cowKSM = 0
    public var thpFaultAlloc = 0
    public var thpFaultFallback = 0
    public var thpSplitPMD = 0
    public var oomKill = 0
    public var pinnedCopiedAtFork = 0
    public var ksmPagesShared = 0
    public var ksmPagesSharing = 0
}
