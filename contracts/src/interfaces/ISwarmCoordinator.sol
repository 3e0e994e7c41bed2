// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ISwarmCoordinator
/// @notice One swarm, one task: staked members train off-chain and agree, round by round, on the
///         next checkpoint. Each round has three windows: commit (hash of an update), reveal (the
///         update's CID, content hash and sample count) and attest (the tuple every honest node
///         computes deterministically from the revealed updates). A tuple finalizes once the
///         stake attesting it reaches the quorum share of the stake that was active when the round
///         opened; otherwise the round fails visibly and the next round retries from the same base.
/// @dev This file holds the types, events and errors with their documentation (Uniswap v4 style),
///      so the contract stays short and off-chain decoders read one file. Every state change
///      emits exactly one event, indexed by round and by the node or account involved, carrying the
///      hashes and CIDs an auditor needs to rebuild the whole history from logs alone.
interface ISwarmCoordinator {
    // ------------------------------------------------------------------------------------------
    // TYPES
    // ------------------------------------------------------------------------------------------

    /// @notice Deployment parameters; immutable for the life of the swarm.
    struct Params {
        uint16 quorumBps; // share of the stake active at round open a tuple needs, in basis points (> 5000)
        uint16 slashBps; // share of a member's stake slashed per offence, in basis points (<= 10000)
        uint64 commitDuration; // seconds the commit window lasts (it closes early once every member committed)
        uint64 revealDuration; // seconds the reveal window lasts after commit closes
        uint64 attestDuration; // seconds the attest window lasts after reveal closes
        uint64 unbondingDelay; // seconds between exit and the earliest withdrawal
        uint256 minStake; // smallest stake a member may join with, in token units (> 0)
        uint256 rewardPerRound; // most a finalized round may pay out, in token units
    }

    /// @notice The tuple members attest to. Every field is a pure function of public inputs.
    struct Outcome {
        bytes32 checkpointHash; // SHA-256 of the aggregated checkpoint blob
        string checkpointCid; // CID of that blob in the content store
        bytes acceptedBitmap; // bit i (LSB-first in byte i / 8) = member with index i was accepted
        bytes32 rewardsRoot; // OpenZeppelin StandardMerkleTree root over (address, uint256) rewards
        uint256 rewardTotal; // sum of the tree's amounts: exactly what finalize reserves for claims
    }

    /// @notice Lifecycle of a round id.
    enum RoundStatus {
        None, // never opened
        Open, // the current round
        Finalized, // a tuple reached quorum; its record is stored
        Failed // no tuple reached quorum by the attest deadline; retried as the next round
    }

    /// @notice Where the current round stands in time.
    enum Phase {
        Commit,
        Reveal,
        Attest,
        Ended // every window is over (or the round is closed): finalize or failRound decides
    }

    /// @notice A member's standing.
    enum MemberStatus {
        None, // never joined, or withdrew
        Active, // staked and counted in the stake of rounds that open from now on
        Exiting // exit requested; stake stays escrowed (and slashable) until withdrawal
    }

    /// @notice What a node did in a round.
    enum SubmissionState {
        None,
        Committed, // committed, not revealed (yet)
        Revealed,
        Slashed // a slash for this round was applied
    }

    /// @notice Why a slash happened.
    enum SlashReason {
        NotRevealed, // committed but never revealed
        Rejected // revealed, but left out of the finalized bitmap, or of quorum-backed tuples (failed round)
    }

    /// @notice Everything about one round, for nodes and auditors (`roundInfo`).
    struct RoundInfo {
        RoundStatus status;
        Phase phase;
        uint64 baseRound; // round whose checkpoint this round starts from; 0 = the task spec's genesis
        uint64 openedAt; // timestamp the round opened
        uint64 commitDeadline; // commits are accepted while block.timestamp < commitDeadline
        uint64 revealDeadline; // reveals are accepted from commitDeadline while < revealDeadline
        uint64 attestDeadline; // attestations are accepted from revealDeadline while < attestDeadline
        uint32 activeAtOpen; // members active when the round opened
        uint32 commits;
        uint32 reveals;
        uint32 attests;
        uint256 stakeAtOpen; // stake active when the round opened (the quorum's denominator)
        uint256 requiredStake; // stake one tuple needs to finalize
        uint256 leadingStake; // stake behind the most-attested tuple so far
        uint256 rewardRemaining; // the tuple's rewardTotal, reserved at finalization, less claims paid
        bytes32 seed; // public deterministic seed (`roundSeed`)
    }

    /// @notice Everything about one member (`memberInfo`).
    struct MemberInfo {
        MemberStatus status;
        bool registered; // holds a member index (joined at least once)
        uint32 index; // bit position in accepted bitmaps; kept across exit and re-join
        uint256 stake; // escrowed stake, slashable until withdrawn
        uint256 stakeAtOpen; // stake counted for this member in the current round (0 = may not act)
        uint64 unbondingEnds; // earliest withdrawal time while Exiting
        uint64 lastCommitRound; // latest round the member committed in (0 = never)
        uint64 lastAttestRound; // latest round the member attested in (0 = never)
        bytes32 ed25519Key; // signs update envelopes
        bytes32 x25519Key; // receives encrypted updates
    }

    // ------------------------------------------------------------------------------------------
    // EVENTS
    // ------------------------------------------------------------------------------------------

    /// @notice Emitted once, by the constructor: the swarm's task and parameters.
    /// @param round Always 0 (the deployment precedes round 1).
    /// @param token The ERC-20 staked and paid.
    /// @param taskSpecHash SHA-256 of the task spec blob.
    /// @param taskSpecCid CID of the task spec blob.
    /// @param params The immutable parameters.
    event SwarmConfigured(
        uint64 indexed round, address indexed token, bytes32 taskSpecHash, string taskSpecCid, Params params
    );

    /// @notice Emitted when a member joins (or re-joins after withdrawing).
    /// @param round The current round; the member counts from the next round that opens.
    /// @param node The member's account.
    /// @param index The member's bit position in accepted bitmaps.
    /// @param stake Tokens escrowed.
    /// @param ed25519Key Public key that signs the member's update envelopes.
    /// @param x25519Key Public key that receives encrypted updates.
    event Joined(
        uint64 indexed round,
        address indexed node,
        uint32 indexed index,
        uint256 stake,
        bytes32 ed25519Key,
        bytes32 x25519Key
    );

    /// @notice Emitted when a member leaves the active set, by request or because a slash left it
    ///         below the minimum stake.
    /// @param round The current round; the member still counts in it if it counted at open.
    /// @param node The member.
    /// @param stake Stake still escrowed, slashable until withdrawal.
    /// @param unbondingEnds Earliest withdrawal time.
    /// @param forced True when a slash pushed the stake below the minimum.
    event ExitRequested(
        uint64 indexed round, address indexed node, uint256 stake, uint64 unbondingEnds, bool forced
    );

    /// @notice Emitted when an exited member takes its stake back.
    /// @param round The current round.
    /// @param node The member.
    /// @param amount Tokens returned.
    event Withdrawn(uint64 indexed round, address indexed node, uint256 amount);

    /// @notice Emitted when tokens are added to the reward pool.
    /// @param round The current round.
    /// @param funder Who paid.
    /// @param amount Tokens added.
    /// @param pool The pool afterwards.
    event RewardsFunded(uint64 indexed round, address indexed funder, uint256 amount, uint256 pool);

    /// @notice Emitted when a round opens (at deployment, at finalization, at failure).
    /// @param round The new round.
    /// @param baseRound The round whose checkpoint it starts from (0 = the task spec's genesis).
    /// @param baseCheckpointHash That checkpoint's hash (zero for genesis).
    /// @param seed The round's public seed.
    /// @param stakeAtOpen Active stake now; the quorum's denominator.
    /// @param activeAtOpen Active members now.
    /// @param commitDeadline When the commit window closes at the latest.
    event RoundOpened(
        uint64 indexed round,
        uint64 indexed baseRound,
        bytes32 baseCheckpointHash,
        bytes32 seed,
        uint256 stakeAtOpen,
        uint32 activeAtOpen,
        uint64 commitDeadline
    );

    /// @notice Emitted when a member commits to an update.
    /// @param round The round.
    /// @param node The member.
    /// @param commitment keccak256 of the update's reveal (`commitmentOf`).
    event Committed(uint64 indexed round, address indexed node, bytes32 commitment);

    /// @notice Emitted when a member reveals the update it committed to.
    /// @param round The round.
    /// @param node The member.
    /// @param cid The update's CID.
    /// @param contentHash SHA-256 of the update blob.
    /// @param numSamples Local samples the update was trained on.
    /// @param salt The commitment's salt, so anyone can recompute the commitment.
    event Revealed(
        uint64 indexed round,
        address indexed node,
        string cid,
        bytes32 contentHash,
        uint64 numSamples,
        bytes32 salt
    );

    /// @notice Emitted when a member attests to a round's outcome.
    /// @param round The round.
    /// @param node The member.
    /// @param outcomeKey keccak256 of the tuple (`outcomeKeyOf`).
    /// @param checkpointHash The tuple's checkpoint hash.
    /// @param checkpointCid The tuple's checkpoint CID.
    /// @param acceptedBitmap The tuple's accepted-member bitmap.
    /// @param rewardsRoot The tuple's rewards Merkle root.
    /// @param rewardTotal The tuple's reward total (sum of the tree's amounts).
    /// @param weight The member's stake at round open, added to the tuple.
    /// @param outcomeStake The tuple's stake after this attestation.
    event Attested(
        uint64 indexed round,
        address indexed node,
        bytes32 indexed outcomeKey,
        bytes32 checkpointHash,
        string checkpointCid,
        bytes acceptedBitmap,
        bytes32 rewardsRoot,
        uint256 rewardTotal,
        uint256 weight,
        uint256 outcomeStake
    );

    /// @notice Emitted when a round finalizes; the next round opens in the same transaction.
    /// @param round The round.
    /// @param caller Whoever called finalize.
    /// @param outcomeKey keccak256 of the tuple.
    /// @param checkpointHash The new checkpoint's hash.
    /// @param checkpointCid The new checkpoint's CID.
    /// @param acceptedBitmap Members whose updates were accepted.
    /// @param rewardsRoot Root of the round's reward tree.
    /// @param rewardTotal What the tree pays: the tokens moved from the pool to the round's
    ///        budget for its claims (the rest of the pool stays for later rounds).
    /// @param outcomeStake Stake that attested the tuple.
    /// @param stakeAtOpen The round's stake at open (the quorum's denominator).
    event RoundFinalized(
        uint64 indexed round,
        address indexed caller,
        bytes32 indexed outcomeKey,
        bytes32 checkpointHash,
        string checkpointCid,
        bytes acceptedBitmap,
        bytes32 rewardsRoot,
        uint256 rewardTotal,
        uint256 outcomeStake,
        uint256 stakeAtOpen
    );

    /// @notice Emitted when a round ends without quorum; the next round opens with the same base.
    /// @param round The failed round.
    /// @param caller Whoever called failRound.
    /// @param baseRound The base the retry starts from.
    /// @param leadingStake Stake behind the most-attested tuple.
    /// @param requiredStake Stake a tuple needed.
    event RoundFailed(
        uint64 indexed round, address indexed caller, uint64 baseRound, uint256 leadingStake, uint256 requiredStake
    );

    /// @notice Emitted when a member's stake is slashed for a closed round.
    /// @param round The round of the offence.
    /// @param node The member.
    /// @param reason Not revealed, or revealed but rejected (by the finalized tuple, or in a
    ///        failed round by attested tuples holding quorum stake together).
    /// @param amount Tokens moved from the stake to the reward pool.
    /// @param remainingStake The member's stake afterwards.
    event Slashed(
        uint64 indexed round, address indexed node, SlashReason reason, uint256 amount, uint256 remainingStake
    );

    /// @notice Emitted when a reward is claimed.
    /// @param round The finalized round.
    /// @param account The rewarded account (the Merkle leaf's address), which receives the tokens.
    /// @param amount Tokens paid.
    event Claimed(uint64 indexed round, address indexed account, uint256 amount);

    // ------------------------------------------------------------------------------------------
    // ERRORS
    // ------------------------------------------------------------------------------------------

    /// @notice A deployment parameter is out of range.
    /// @param name The parameter.
    /// @param value The value given.
    error InvalidParameter(string name, uint256 value);

    /// @notice The stake offered is below the minimum.
    error StakeBelowMinimum(uint256 stake, uint256 minimum);

    /// @notice The Ed25519 key is zero, or the X25519 key is of small order (zero included).
    error InvalidPublicKey(bytes32 ed25519Key, bytes32 x25519Key);

    /// @notice The account is already a member (active or exiting).
    error AlreadyMember(address node, MemberStatus status);

    /// @notice The account holds no membership.
    error NotMember(address node);

    /// @notice Exit needs an active member.
    error NotActive(address node, MemberStatus status);

    /// @notice Withdraw needs an exiting member.
    error NotExiting(address node, MemberStatus status);

    /// @notice The unbonding delay has not passed yet.
    error UnbondingNotOver(address node, uint256 unbondingEnds, uint256 timestamp);

    /// @notice The member committed in a round that is still open; withdraw once it closes.
    error RoundStillOpen(uint64 round);

    /// @notice The call names a round other than the current one.
    error WrongRound(uint64 round, uint64 currentRound);

    /// @notice The round id was never opened.
    error UnknownRound(uint64 round);

    /// @notice The phase the call needs has not started yet.
    error PhaseNotStarted(uint64 round, Phase phase, uint256 startsAt, uint256 timestamp);

    /// @notice The phase the call needs is over.
    error DeadlinePassed(uint64 round, Phase phase, uint256 deadline, uint256 timestamp);

    /// @notice The member held no stake when the round opened, so it may not act in it.
    error NotEligible(uint64 round, address node);

    /// @notice A commitment must be a keccak256 output, not zero or a reserved marker.
    error InvalidCommitment(bytes32 commitment);

    /// @notice The member already committed in the round.
    error AlreadyCommitted(uint64 round, address node);

    /// @notice The member did not commit in the round.
    error NotCommitted(uint64 round, address node);

    /// @notice The member already revealed in the round.
    error AlreadyRevealed(uint64 round, address node);

    /// @notice The reveal does not hash to the commitment.
    error CommitmentMismatch(uint64 round, address node, bytes32 committed, bytes32 revealed);

    /// @notice A CID is empty or longer than the bound.
    error InvalidCid(uint256 length, uint256 maxLength);

    /// @notice A content or checkpoint hash is zero.
    error ZeroHash();

    /// @notice A reveal claims zero training samples.
    error ZeroSamples();

    /// @notice The accepted bitmap has more bytes than the member indices need.
    error BitmapTooLong(uint256 length, uint256 maxLength);

    /// @notice A tuple's reward total exceeds what the round may reserve:
    ///         min(rewardPool, rewardPerRound) at the time of the call.
    error RewardTotalTooHigh(uint64 round, uint256 rewardTotal, uint256 available);

    /// @notice The member already attested in the round.
    error AlreadyAttested(uint64 round, address node);

    /// @notice The tuple's stake is below the quorum.
    error QuorumNotReached(uint64 round, bytes32 outcomeKey, uint256 stake, uint256 required);

    /// @notice The round is already finalized.
    error RoundAlreadyFinalized(uint64 round);

    /// @notice failRound before the attest window is over.
    error RoundNotExpired(uint64 round, uint256 attestDeadline, uint256 timestamp);

    /// @notice failRound while a tuple holds quorum: finalize it instead.
    error QuorumReached(uint64 round, uint256 leadingStake, uint256 required);

    /// @notice The round is not closed (finalized or failed) yet.
    error RoundNotClosed(uint64 round, RoundStatus status);

    /// @notice The round is not finalized.
    error RoundNotFinalized(uint64 round, RoundStatus status);

    /// @notice The member has no slashable offence in the round.
    error NotSlashable(uint64 round, address node, SubmissionState state);

    /// @notice The member was already slashed for the round.
    error AlreadySlashed(uint64 round, address node);

    /// @notice slashRejected needs a failed round.
    error RoundNotFailed(uint64 round, RoundStatus status);

    /// @notice The tuples must be given in strictly increasing key order (so none counts twice).
    /// @param position The tuple's position in the list.
    /// @param outcomeKey Its key.
    /// @param previousKey The key of the tuple before it (zero for the first).
    error TuplesNotSorted(uint256 position, bytes32 outcomeKey, bytes32 previousKey);

    /// @notice No stake attested this tuple in the round.
    error TupleNotAttested(uint64 round, bytes32 outcomeKey);

    /// @notice This tuple accepts the member, so it does not count against it.
    error TupleAcceptsNode(uint64 round, bytes32 outcomeKey, address node, uint32 index);

    /// @notice The tuples that reject the member hold less than the round's required stake.
    error RejectionBelowQuorum(uint64 round, address node, uint256 stake, uint256 required);

    /// @notice The Merkle proof does not prove (account, amount) under the round's rewards root.
    error InvalidProof(uint64 round, address account, uint256 amount);

    /// @notice The account already claimed its reward for the round.
    error AlreadyClaimed(uint64 round, address account);

    /// @notice The claim exceeds what is left of the round's reward budget.
    error RewardBudgetExceeded(uint64 round, uint256 amount, uint256 remaining);

    /// @notice An amount of zero tokens.
    error ZeroAmount();

    // ------------------------------------------------------------------------------------------
    // MEMBERSHIP
    // ------------------------------------------------------------------------------------------

    /// @notice Join the swarm: escrow `stake` tokens (approve them first) and register keys.
    /// @dev Requires stake >= minStake, a non-zero Ed25519 key, an X25519 key that is not of small
    ///      order, and no current membership. The member is counted from the next round that
    ///      opens. Emits `Joined`.
    /// @param stake Tokens to escrow.
    /// @param ed25519Key Public key that signs the member's update envelopes.
    /// @param x25519Key Public key that receives encrypted updates.
    function join(uint256 stake, bytes32 ed25519Key, bytes32 x25519Key) external;

    /// @notice Leave the active set; the stake stays escrowed and slashable for `unbondingDelay`.
    /// @dev Requires an active member. Emits `ExitRequested`.
    function exit() external;

    /// @notice Take the stake back after unbonding, first applying any slash still due.
    /// @dev Requires an exiting member, the unbonding delay over, and its last committed round
    ///      closed. Emits `Slashed` if a slash was due, then `Withdrawn`.
    function withdraw() external;

    /// @notice Add `amount` tokens (approve them first) to the reward pool.
    /// @dev Requires amount > 0. Emits `RewardsFunded`.
    function fundRewards(uint256 amount) external;

    // ------------------------------------------------------------------------------------------
    // ROUNDS
    // ------------------------------------------------------------------------------------------

    /// @notice Commit to an update for the current round.
    /// @dev Requires the commit window, a member that held stake at open, no earlier commit in
    ///      the round, and a non-reserved commitment. Settles the member's previous committed
    ///      round first (applying its slash if due), so a slash cannot be dodged by moving on.
    ///      Emits `Committed` (after `Slashed`, when a slash was due).
    /// @param round The current round id.
    /// @param commitment `commitmentOf(cid, contentHash, numSamples, salt, msg.sender, round)`.
    function commit(uint64 round, bytes32 commitment) external;

    /// @notice Reveal the committed update.
    /// @dev Requires the reveal window, a matching unrevealed commitment, a CID of 1..128 bytes,
    ///      a non-zero content hash and at least one sample. Emits `Revealed`.
    /// @param round The current round id.
    /// @param cid The update's CID.
    /// @param contentHash SHA-256 of the update blob.
    /// @param numSamples Local samples the update was trained on.
    /// @param salt The secret salt used in the commitment.
    function reveal(uint64 round, string calldata cid, bytes32 contentHash, uint64 numSamples, bytes32 salt)
        external;

    /// @notice Attest to the round's outcome with the stake the sender held when the round opened.
    /// @dev Requires the attest window, a member that held stake at open and has not attested,
    ///      a non-zero checkpoint hash, a CID of 1..128 bytes, a bitmap no longer than the
    ///      member indices need, and a reward total of at most min(rewardPool, rewardPerRound)
    ///      (`RewardTotalTooHigh`; the pool only grows while a round is open, so every tuple
    ///      with stake stays affordable at finalize). Emits `Attested`.
    /// @param round The current round id.
    /// @param outcome The tuple.
    function attest(uint64 round, Outcome calldata outcome) external;

    /// @notice Finalize the current round with a tuple that holds quorum; opens the next round.
    /// @dev Anyone may call. Requires the tuple's stake >= `requiredStake` and its reward total
    ///      <= min(rewardPool, rewardPerRound) (`RewardTotalTooHigh`). Reserves exactly the
    ///      tuple's `rewardTotal` for claims; the rest of the pool stays for later rounds.
    ///      Emits `RoundFinalized` then `RoundOpened`.
    /// @param round The current round id.
    /// @param outcome The tuple.
    function finalize(uint64 round, Outcome calldata outcome) external;

    /// @notice Close the current round as failed once its windows are over with no tuple at
    ///         quorum; opens the next round from the same base.
    /// @dev Anyone may call. Emits `RoundFailed` then `RoundOpened`.
    /// @param round The current round id.
    function failRound(uint64 round) external;

    /// @notice Slash `node` for its offence in a closed round: committed but never revealed, or
    ///         (in a finalized round) revealed but not accepted. A revealed member of a failed
    ///         round is slashed through `slashRejected` instead.
    /// @dev Anyone may call; moves `slashBps` of the stake to the reward pool. A member left
    ///      below the minimum stake is exited. Emits `Slashed` (and `ExitRequested` if forced).
    /// @param round A finalized or failed round.
    /// @param node The member.
    function slash(uint64 round, address node) external;

    /// @notice Slash `node` for an update that a quorum of stake rejected in a failed round: the
    ///         given tuples were all attested in `round`, none accepts `node`, and their stakes
    ///         add up to at least the round's required stake.
    /// @dev Anyone may call. Requires a failed round (`RoundNotFailed`), a revealed submission
    ///      not slashed yet (`AlreadySlashed`, `NotSlashable`), tuples in strictly increasing
    ///      key order (`TuplesNotSorted`), each with attested stake (`TupleNotAttested`) and a
    ///      bitmap without the member's index (`TupleAcceptsNode`), and their summed stake at
    ///      quorum (`RejectionBelowQuorum`). Distinct keys have disjoint attesters, so no stake
    ///      counts twice. Loops over the caller's tuples only (at most one per attester); no node
    ///      must call it. Emits `Slashed` with reason Rejected (and `ExitRequested` if forced).
    /// @param round A failed round.
    /// @param node The member.
    /// @param tuples Attested tuples that reject `node`, sorted by `outcomeKeyOf`.
    function slashRejected(uint64 round, address node, Outcome[] calldata tuples) external;

    /// @notice Pay `account` its reward for a finalized round.
    /// @dev Anyone may call; tokens go to `account`. Requires a valid OpenZeppelin Merkle proof of
    ///      the leaf keccak256(bytes.concat(keccak256(abi.encode(account, amount)))), no earlier
    ///      claim, and enough budget left. Emits `Claimed`.
    /// @param round The finalized round.
    /// @param account The rewarded account.
    /// @param amount The leaf's amount.
    /// @param proof Sibling hashes from the leaf to the root.
    function claim(uint64 round, address account, uint256 amount, bytes32[] calldata proof) external;

    // ------------------------------------------------------------------------------------------
    // VIEWS
    // ------------------------------------------------------------------------------------------

    /// @notice The ERC-20 staked and paid.
    function token() external view returns (address);

    /// @notice SHA-256 of the task spec blob (model, hyper-parameters, aggregation rule, genesis).
    function taskSpecHash() external view returns (bytes32);

    /// @notice CID of the task spec blob.
    function taskSpecCid() external view returns (string memory);

    /// @notice The immutable deployment parameters.
    function params() external view returns (Params memory);

    /// @notice The open round's id (rounds start at 1 and only increase).
    function currentRound() external view returns (uint64);

    /// @notice The latest finalized round (0 before the first finalization): the current base.
    function lastFinalizedRound() external view returns (uint64);

    /// @notice Stake of all active members, counted at the next round's open.
    function activeStake() external view returns (uint256);

    /// @notice Number of active members.
    function activeMembers() external view returns (uint32);

    /// @notice Stake escrowed for all members, active and exiting.
    function totalStaked() external view returns (uint256);

    /// @notice Tokens available for future rounds' reward budgets.
    function rewardPool() external view returns (uint256);

    /// @notice Tokens reserved for finalized rounds and not yet claimed.
    function rewardsOutstanding() external view returns (uint256);

    /// @notice Everything about a round that was opened.
    /// @dev Reverts `UnknownRound` for 0 or a future id.
    function roundInfo(uint64 round) external view returns (RoundInfo memory);

    /// @notice The public deterministic seed of a round: keccak256(abi.encode(chainid, this,
    ///         round, baseRound, baseCheckpointHash, openedAt)); fixed when the round opens.
    /// @dev Reverts `UnknownRound` for 0 or a future id.
    function roundSeed(uint64 round) external view returns (bytes32);

    /// @notice The stored record of a finalized round.
    /// @dev Reverts `RoundNotFinalized` otherwise.
    function finalizedOutcome(uint64 round) external view returns (Outcome memory);

    /// @notice Stake that attested the tuple with `outcomeKey` in `round`.
    function outcomeStake(uint64 round, bytes32 outcomeKey) external view returns (uint256);

    /// @notice What `node` did in `round`, and its commitment while it is unrevealed.
    function submission(uint64 round, address node) external view returns (SubmissionState, bytes32);

    /// @notice Whether `account` claimed its reward for `round`.
    function claimed(uint64 round, address account) external view returns (bool);

    /// @notice Everything about a member (status None with zero fields for a stranger).
    function memberInfo(address node) external view returns (MemberInfo memory);

    /// @notice The account holding member index `index`.
    function memberAt(uint32 index) external view returns (address);

    /// @notice How many member indices were assigned (bitmaps need ceil(count / 8) bytes).
    function memberCount() external view returns (uint32);

    /// @notice The commitment a reveal must match: keccak256(abi.encode(cid, contentHash,
    ///         numSamples, salt, node, round, address(this))).
    function commitmentOf(
        string calldata cid,
        bytes32 contentHash,
        uint64 numSamples,
        bytes32 salt,
        address node,
        uint64 round
    ) external view returns (bytes32);

    /// @notice The key stake accumulates under: keccak256(abi.encode(checkpointHash,
    ///         checkpointCid, acceptedBitmap, rewardsRoot, rewardTotal)).
    function outcomeKeyOf(Outcome calldata outcome) external pure returns (bytes32);
}
