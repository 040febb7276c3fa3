/// A tier's plan, as `TierAttempts` records it.
protocol AttachPlan {
    var tier: AttachTier { get }
    /// The programs the attempt loads and attaches (for `doctor`).
    var attemptPrograms: [String] { get }
    var copyByAlloc: Bool { get }
}

extension TierPlan: AttachPlan {
    var attemptPrograms: [String] { allPrograms }
}

extension OOMTierPlan: AttachPlan {
    var attemptPrograms: [String] { programs }
    var copyByAlloc: Bool { false }
}

/// The tier loop CowTracer and OOMTracer share: plans each tier in order
/// (only `forced` if given), loads and attaches the first whose plan succeeds,
/// and records why every other tier failed.
enum TierAttempts {
    /// - `abortOnPlanFailure`: a failed plan ends the loop even when no tier
    ///   is forced (nothing later can succeed either).
    /// - Throws: with `forced`, that tier's own error; without, `noTierAvailable`
    ///   with every attempt. Only TracerErrors fall through to the next tier.
    static func first<Plan: AttachPlan, Loaded>(
        forced: AttachTier?,
        abortOnPlanFailure: Bool = false,
        plan: (AttachTier) -> Result<Plan, TierPlanner.Unavailable>,
        load: (Plan) throws -> Loaded
    ) throws -> (loaded: Loaded, plan: Plan, attempts: [TierAttempt]) {
        var attempts: [TierAttempt] = []
        for tier in forced.map({ [$0] }) ?? AttachTier.allCases {
            let planned: Plan
            switch plan(tier) {
            case .failure(let reason):
                attempts.append(TierAttempt(tier: tier, failure: reason.description, programs: [], copyByAlloc: false))
                if forced != nil || abortOnPlanFailure { throw TracerError.tierUnavailable(tier: tier, reason: reason.description) }
                continue
            case .success(let p):
                planned = p
            }
            do {
                let loaded = try load(planned)
                attempts.append(TierAttempt(tier: tier, failure: nil, programs: planned.attemptPrograms, copyByAlloc: planned.copyByAlloc))
                return (loaded, planned, attempts)
            } catch let error as TracerError {
                attempts.append(TierAttempt(tier: tier, failure: error.description, programs: planned.attemptPrograms, copyByAlloc: planned.copyByAlloc))
                if forced != nil { throw error }
            }
        }
        throw TracerError.noTierAvailable(attempts)
    }
}
