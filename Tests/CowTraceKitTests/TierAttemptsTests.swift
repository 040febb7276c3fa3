@testable import CowTraceKit
import XCTest

/// The tier loop both tracers share: the order tiers are tried in, what is
/// recorded for each, and when it stops (no kernel: plans and loads are given).
final class TierAttemptsTests: XCTestCase {
    struct Plan: AttachPlan {
        let tier: AttachTier
        var attemptPrograms: [String] { ["prog_\(tier)"] }
        var copyByAlloc: Bool { tier == .tracepoint }
    }

    private let unplanned = TierPlanner.Unavailable(description: "no such hook")

    func testFallsBackPastPlanAndLoadFailuresToTheFirstTierThatLoads() throws {
        var loaded: [AttachTier] = []
        let result = try TierAttempts.first(
            forced: nil,
            plan: { $0 == .fentry ? .failure(unplanned) : .success(Plan(tier: $0)) }
        ) { plan -> AttachTier in
            loaded.append(plan.tier)
            if plan.tier == .kprobe { throw TracerError.attachFailed(tier: .kprobe, program: "prog_kprobe", errno: .notSupported) }
            return plan.tier
        }
        XCTAssertEqual(loaded, [.kprobe, .tracepoint], "fentry's plan failed, so it is never loaded")
        XCTAssertEqual(result.loaded, .tracepoint)
        XCTAssertEqual(result.plan.tier, .tracepoint)
        XCTAssertEqual(result.attempts.map(\.tier), [.fentry, .kprobe, .tracepoint])
        XCTAssertEqual(result.attempts[0].failure, "no such hook")
        XCTAssertEqual(result.attempts[0].programs, [])
        XCTAssertEqual(result.attempts[1].failure, TracerError.attachFailed(tier: .kprobe, program: "prog_kprobe", errno: .notSupported).description)
        XCTAssertEqual(result.attempts[1].programs, ["prog_kprobe"])
        XCTAssertNil(result.attempts[2].failure)
        XCTAssertEqual(result.attempts[2].copyByAlloc, true)
    }

    func testStopsAtTheFirstTierThatLoads() throws {
        var loaded: [AttachTier] = []
        let result = try TierAttempts.first(forced: nil, plan: { .success(Plan(tier: $0)) }) { plan -> Int in
            loaded.append(plan.tier)
            return 7
        }
        XCTAssertEqual(loaded, [.fentry])
        XCTAssertEqual(result.attempts.count, 1)
    }

    func testEveryTierFailingListsEveryReason() {
        XCTAssertThrowsError(try TierAttempts.first(forced: nil, plan: { .success(Plan(tier: $0)) }) { plan -> Int in
            throw TracerError.loadFailed(tier: plan.tier, errno: .notPermitted, detail: "")
        }) { error in
            guard case TracerError.noTierAvailable(let attempts)? = error as? TracerError else { return XCTFail("\(error)") }
            XCTAssertEqual(attempts.map(\.tier), AttachTier.allCases)
            XCTAssertTrue(attempts.allSatisfy { $0.failure?.contains("EPERM") == true })
            XCTAssertTrue("\(error)".hasPrefix("no attach tier works on this kernel (fentry: loading the fentry tier failed"), "\(error)")
        }
    }

    func testAForcedTierThrowsItsOwnError() {
        XCTAssertThrowsError(try TierAttempts.first(forced: .kprobe, plan: { .success(Plan(tier: $0)) }) { _ -> Int in
            throw TracerError.attachFailed(tier: .kprobe, program: "prog_kprobe", errno: .noEntry)
        }) { error in
            guard case TracerError.attachFailed(.kprobe, "prog_kprobe", .noEntry)? = error as? TracerError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try TierAttempts.first(forced: .fentry, plan: { _ in Result<Plan, TierPlanner.Unavailable>.failure(unplanned) }) { _ -> Int in 0 }) { error in
            guard case TracerError.tierUnavailable(.fentry, "no such hook")? = error as? TracerError else { return XCTFail("\(error)") }
        }
    }

    func testAbortOnPlanFailureStopsWithoutAForcedTier() {
        var loads = 0
        XCTAssertThrowsError(try TierAttempts.first(forced: nil, abortOnPlanFailure: true,
                                                    plan: { _ in Result<Plan, TierPlanner.Unavailable>.failure(unplanned) }) { _ -> Int in
            loads += 1
            return 0
        }) { error in
            guard case TracerError.tierUnavailable(.fentry, _)? = error as? TracerError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(loads, 0)
    }

    func testOtherErrorsAreNotATierFailure() {
        struct Unexpected: Error {}
        var loads = 0
        XCTAssertThrowsError(try TierAttempts.first(forced: nil, plan: { .success(Plan(tier: $0)) }) { _ -> Int in
            loads += 1
            throw Unexpected()
        }) { error in
            XCTAssertTrue(error is Unexpected)
        }
        XCTAssertEqual(loads, 1)
    }
}
