/// One simulated process (`struct task_struct` with its signal struct).
final class Task {
    let pid: Int32
    var comm: String
    let uid: UInt32
    var oomScoreAdj: Int
    let capSysAdmin: Bool
    var mm: MM?
    /// memcg and alive are read on every page allocation.
    struct State { var memcg: Int; var alive: Bool }
    let state: UnsafeMutablePointer<State>
    var memcg: Int { get { state.pointee.memcg } set { state.pointee.memcg = newValue } }
    var alive: Bool { get { state.pointee.alive } set { state.pointee.alive = newValue } }
    var killedByOOM = false
    let parent: Int32?
    var faults = FaultCounts()

    init(pid: Int32, comm: String, uid: UInt32, oomScoreAdj: Int, memcg: Int, capSysAdmin: Bool, parent: Int32?, mm: MM) {
        self.pid = pid
        self.comm = String(comm.prefix(15)) // TASK_COMM_LEN - 1
        self.uid = uid
        self.oomScoreAdj = oomScoreAdj
        state = .allocate(capacity: 1)
        state.initialize(to: State(memcg: memcg, alive: true))
        self.capSysAdmin = capSysAdmin
        self.parent = parent
        self.mm = mm
    }

    deinit { state.deallocate() }
}
