// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ISwarmCoordinator} from "./interfaces/ISwarmCoordinator.sol";
import {MemberBitmap} from "./libraries/MemberBitmap.sol";
import {RoundClock} from "./libraries/RoundClock.sol";
import {SwarmHashes} from "./libraries/SwarmHashes.sol";
import {X25519} from "./libraries/X25519.sol";

/// @title SwarmCoordinator
/// @notice Staking, commit-reveal rounds, stake-quorum checkpoints, lazy slashing and Merkle
///         rewards for one swarm. Types, events, errors and their documentation live in
///         `ISwarmCoordinator`.
/// @dev No admin: every parameter is fixed at deployment. No function loops over members:
///      attestations add stake to the key of their tuple, finalize reads one key, and per-member
///      consequences (slashes, claims) are applied lazily, one member per call (`slashRejected`
///      loops over the tuples its caller supplies, at most one per attester). All token
///      balances change in `_move`.
contract SwarmCoordinator is ISwarmCoordinator {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using MemberBitmap for bytes;

    // ------------------------------------------------------------------------------------------
    // CONSTANTS AND IMMUTABLES
    // ------------------------------------------------------------------------------------------

    /// @notice Longest CID accepted (a CIDv1 base32 SHA-256 CID has 59 characters).
    uint256 public constant MAX_CID_LENGTH = 128;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_DURATION = 3650 days;
    // Stored in place of a commitment once it is revealed or slashed. `commit` refuses them as
    // commitments, and a keccak256 output equals them only with negligible probability.
    bytes32 internal constant REVEALED = bytes32(uint256(1));
    bytes32 internal constant SLASHED = bytes32(uint256(2));

    IERC20 internal immutable _token;
    /// @inheritdoc ISwarmCoordinator
    bytes32 public immutable taskSpecHash;
    uint16 internal immutable _quorumBps;
    uint16 internal immutable _slashBps;
    uint64 internal immutable _commitDuration;
    uint64 internal immutable _revealDuration;
    uint64 internal immutable _attestDuration;
    uint64 internal immutable _unbondingDelay;
    uint256 internal immutable _minStake;
    uint256 internal immutable _rewardPerRound;

    // ------------------------------------------------------------------------------------------
    // STORAGE
    // ------------------------------------------------------------------------------------------

    /// @dev Packed so that a commit, reveal or attestation rewrites slot 0 and reads slot 1.
    struct Round {
        // slot 0
        uint40 openedAt;
        uint40 commitClosedAt;
        uint40 revealClosedAt;
        uint40 attestClosedAt;
        uint32 commits;
        uint32 reveals;
        uint32 attests;
        // slot 1
        uint128 stakeAtOpen;
        uint64 baseRound;
        uint32 activeAtOpen;
        RoundStatus status;
        // slot 2
        uint128 leadingStake;
        uint128 rewardRemaining; // reserved at finalization, less what claims paid
    }

    struct Member {
        // slot 0
        uint128 stake;
        uint128 stakeAtOpen; // active stake when `checkpointRound` opened
        // slot 1
        uint64 checkpointRound; // the round in which stake or status last changed
        uint64 lastCommitRound;
        uint64 lastAttestRound;
        uint32 index;
        MemberStatus status;
        bool registered;
        // slot 2
        uint64 unbondingEnds;
        // slots 3, 4
        bytes32 ed25519Key;
        bytes32 x25519Key;
    }

    /// @dev The ledgers `_move` moves tokens between.
    enum Ledger {
        Account, // an outside wallet: a token transfer in or out
        Stake, // a member's escrowed stake
        Pool, // the reward pool future rounds draw their budgets from
        Budget // a finalized round's reward budget, paid out by claims
    }

    /// @inheritdoc ISwarmCoordinator
    string public taskSpecCid;
    /// @inheritdoc ISwarmCoordinator
    uint64 public currentRound;
    /// @inheritdoc ISwarmCoordinator
    uint64 public lastFinalizedRound;
    /// @inheritdoc ISwarmCoordinator
    uint32 public activeMembers;
    /// @inheritdoc ISwarmCoordinator
    uint32 public memberCount;
    /// @inheritdoc ISwarmCoordinator
    uint256 public activeStake;
    /// @inheritdoc ISwarmCoordinator
    uint256 public totalStaked;
    /// @inheritdoc ISwarmCoordinator
    uint256 public rewardPool;
    /// @inheritdoc ISwarmCoordinator
    uint256 public rewardsOutstanding;

    mapping(uint64 round => Round) internal _rounds;
    mapping(uint64 round => Outcome) internal _outcomes;
    /// @inheritdoc ISwarmCoordinator
    mapping(uint64 round => mapping(bytes32 outcomeKey => uint256)) public outcomeStake;
    /// @dev The commitment while unrevealed, then REVEALED, then possibly SLASHED.
    mapping(uint64 round => mapping(address node => bytes32)) internal _submissions;
    /// @inheritdoc ISwarmCoordinator
    mapping(uint64 round => mapping(address account => bool)) public claimed;
    mapping(address node => Member) internal _members;
    /// @inheritdoc ISwarmCoordinator
    mapping(uint32 index => address) public memberAt;

    // ------------------------------------------------------------------------------------------
    // CONSTRUCTOR
    // ------------------------------------------------------------------------------------------

    /// @notice Configure the swarm and open round 1.
    /// @dev Emits `SwarmConfigured` and `RoundOpened`. Round 1 opens with no members, so it ends at
    ///      once; the first `failRound(1)` after members join opens a round that counts them.
    /// @param token_ The ERC-20 staked and paid (a standard token: no fees on transfer, no hooks).
    /// @param taskSpecCid_ CID of the task spec blob.
    /// @param taskSpecHash_ SHA-256 of the task spec blob.
    /// @param p The parameters.
    constructor(IERC20 token_, string memory taskSpecCid_, bytes32 taskSpecHash_, Params memory p) {
        if (address(token_) == address(0)) revert InvalidParameter("token", 0);
        // Stakes and budgets are stored as uint128; a bounded supply makes every cast safe.
        uint256 supply = token_.totalSupply();
        if (supply > type(uint128).max) revert InvalidParameter("token supply", supply);
        if (bytes(taskSpecCid_).length == 0 || bytes(taskSpecCid_).length > MAX_CID_LENGTH) {
            revert InvalidCid(bytes(taskSpecCid_).length, MAX_CID_LENGTH);
        }
        if (taskSpecHash_ == bytes32(0)) revert ZeroHash();
        if (p.quorumBps <= BPS / 2 || p.quorumBps > BPS) revert InvalidParameter("quorumBps", p.quorumBps);
        if (p.slashBps > BPS) revert InvalidParameter("slashBps", p.slashBps);
        if (p.commitDuration == 0 || p.commitDuration > MAX_DURATION) {
            revert InvalidParameter("commitDuration", p.commitDuration);
        }
        if (p.revealDuration == 0 || p.revealDuration > MAX_DURATION) {
            revert InvalidParameter("revealDuration", p.revealDuration);
        }
        if (p.attestDuration == 0 || p.attestDuration > MAX_DURATION) {
            revert InvalidParameter("attestDuration", p.attestDuration);
        }
        if (p.unbondingDelay > MAX_DURATION) revert InvalidParameter("unbondingDelay", p.unbondingDelay);
        if (p.minStake == 0) revert InvalidParameter("minStake", 0);
        if (p.rewardPerRound > type(uint128).max) revert InvalidParameter("rewardPerRound", p.rewardPerRound);

        _token = token_;
        taskSpecCid = taskSpecCid_;
        taskSpecHash = taskSpecHash_;
        _quorumBps = p.quorumBps;
        _slashBps = p.slashBps;
        _commitDuration = p.commitDuration;
        _revealDuration = p.revealDuration;
        _attestDuration = p.attestDuration;
        _unbondingDelay = p.unbondingDelay;
        _minStake = p.minStake;
        _rewardPerRound = p.rewardPerRound;
        emit SwarmConfigured(0, address(token_), taskSpecHash_, taskSpecCid_, p);
        _openRound(1, 0);
    }

    // ------------------------------------------------------------------------------------------
    // MEMBERSHIP
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc ISwarmCoordinator
    function join(uint256 stake, bytes32 ed25519Key, bytes32 x25519Key) external {
        if (stake < _minStake) revert StakeBelowMinimum(stake, _minStake);
        // A small-order X25519 key can receive nothing, and every encrypting member would have
        // to leave it out; refusing it here is cheaper than every node checking it.
        if (ed25519Key == bytes32(0) || X25519.isSmallOrder(x25519Key)) {
            revert InvalidPublicKey(ed25519Key, x25519Key);
        }
        Member storage m = _members[msg.sender];
        if (m.status != MemberStatus.None) revert AlreadyMember(msg.sender, m.status);

        if (!m.registered) {
            uint32 index = memberCount;
            m.registered = true;
            m.index = index;
            memberAt[index] = msg.sender;
            memberCount = index + 1;
        }
        m.ed25519Key = ed25519Key;
        m.x25519Key = x25519Key;
        _setStatus(m, MemberStatus.Active);
        // Emitted before the token transfer in `_move` so events stay in order.
        emit Joined(currentRound, msg.sender, m.index, stake, ed25519Key, x25519Key);
        _move(Ledger.Account, Ledger.Stake, msg.sender, 0, stake);
    }

    /// @inheritdoc ISwarmCoordinator
    function exit() external {
        Member storage m = _members[msg.sender];
        if (m.status != MemberStatus.Active) revert NotActive(msg.sender, m.status);
        _beginUnbonding(msg.sender, m, false);
    }

    /// @inheritdoc ISwarmCoordinator
    function withdraw() external {
        Member storage m = _members[msg.sender];
        if (m.status != MemberStatus.Exiting) revert NotExiting(msg.sender, m.status);
        if (block.timestamp < m.unbondingEnds) revert UnbondingNotOver(msg.sender, m.unbondingEnds, block.timestamp);
        // An offence in the open round is not known yet; waiting for it keeps it slashable.
        if (m.lastCommitRound == currentRound) revert RoundStillOpen(currentRound);

        _settle(msg.sender, m);
        uint256 amount = m.stake;
        _setStatus(m, MemberStatus.None);
        emit Withdrawn(currentRound, msg.sender, amount);
        _move(Ledger.Stake, Ledger.Account, msg.sender, 0, amount);
    }

    /// @inheritdoc ISwarmCoordinator
    function fundRewards(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        emit RewardsFunded(currentRound, msg.sender, amount, rewardPool + amount);
        _move(Ledger.Account, Ledger.Pool, msg.sender, 0, amount);
    }

    // ------------------------------------------------------------------------------------------
    // ROUNDS
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc ISwarmCoordinator
    function commit(uint64 round, bytes32 commitment) external {
        if (uint256(commitment) <= uint256(SLASHED)) revert InvalidCommitment(commitment);
        Round storage rd = _requirePhase(round, Phase.Commit);
        Member storage m = _requireMember(round, msg.sender);
        if (_submissions[round][msg.sender] != bytes32(0)) revert AlreadyCommitted(round, msg.sender);

        // The previous committed round is closed by now; settling it here means an offence
        // there is punished before the member can move on (and, at withdraw, before it leaves).
        _settle(msg.sender, m);
        _submissions[round][msg.sender] = commitment;
        m.lastCommitRound = round;
        // Unchecked: commits <= activeAtOpen < 2**32, since each member commits once per round.
        unchecked {
            rd.commits += 1;
        }
        if (rd.commits == _rounds[round].activeAtOpen) rd.commitClosedAt = uint40(block.timestamp);
        emit Committed(round, msg.sender, commitment);
    }

    /// @inheritdoc ISwarmCoordinator
    function reveal(uint64 round, string calldata cid, bytes32 contentHash, uint64 numSamples, bytes32 salt)
        external
    {
        _requireCid(cid);
        if (contentHash == bytes32(0)) revert ZeroHash();
        if (numSamples == 0) revert ZeroSamples();
        Round storage rd = _requirePhase(round, Phase.Reveal);
        bytes32 committed = _submissions[round][msg.sender];
        if (committed == bytes32(0)) revert NotCommitted(round, msg.sender);
        if (committed == REVEALED) revert AlreadyRevealed(round, msg.sender);
        bytes32 revealed =
            SwarmHashes.commitment(cid, contentHash, numSamples, salt, msg.sender, round, address(this));
        if (revealed != committed) revert CommitmentMismatch(round, msg.sender, committed, revealed);

        _submissions[round][msg.sender] = REVEALED;
        // Unchecked: reveals <= commits < 2**32, since each commitment is revealed once.
        unchecked {
            rd.reveals += 1;
        }
        if (rd.reveals == rd.commits) rd.revealClosedAt = uint40(block.timestamp);
        emit Revealed(round, msg.sender, cid, contentHash, numSamples, salt);
    }

    /// @inheritdoc ISwarmCoordinator
    function attest(uint64 round, Outcome calldata outcome) external {
        if (outcome.checkpointHash == bytes32(0)) revert ZeroHash();
        _requireCid(outcome.checkpointCid);
        _requireBitmap(outcome.acceptedBitmap);
        Round storage rd = _requirePhase(round, Phase.Attest);
        Member storage m = _requireMember(round, msg.sender);
        _requireAffordable(round, outcome.rewardTotal);
        if (m.lastAttestRound == round) revert AlreadyAttested(round, msg.sender);

        uint256 weight = _stakeAtOpen(m);
        m.lastAttestRound = round;
        bytes32 key = SwarmHashes.outcomeKey(outcome);
        uint256 stake = outcomeStake[round][key] + weight;
        outcomeStake[round][key] = stake;
        if (stake > _rounds[round].leadingStake) _rounds[round].leadingStake = stake.toUint128();
        // Unchecked: attests <= activeAtOpen < 2**32, since each member attests once per round.
        unchecked {
            rd.attests += 1;
        }
        if (rd.attests == _rounds[round].activeAtOpen) rd.attestClosedAt = uint40(block.timestamp);
        emit Attested(
            round,
            msg.sender,
            key,
            outcome.checkpointHash,
            outcome.checkpointCid,
            outcome.acceptedBitmap,
            outcome.rewardsRoot,
            outcome.rewardTotal,
            weight,
            stake
        );
    }

    /// @inheritdoc ISwarmCoordinator
    function finalize(uint64 round, Outcome calldata outcome) external {
        Round storage rd = _requireCurrent(round);
        bytes32 key = SwarmHashes.outcomeKey(outcome);
        uint256 stake = outcomeStake[round][key];
        uint256 required = _requiredStake(rd.stakeAtOpen);
        if (stake < required) revert QuorumNotReached(round, key, stake, required);
        // `attest` already refused this (the pool only grows while a round is open); checked
        // again so that the reservation below never rests on another function's check.
        _requireAffordable(round, outcome.rewardTotal);

        // A tuple with stake passed `attest`'s input checks, so it is stored as given.
        _outcomes[round] = outcome;
        rd.status = RoundStatus.Finalized;
        lastFinalizedRound = round;
        emit RoundFinalized(
            round,
            msg.sender,
            key,
            outcome.checkpointHash,
            outcome.checkpointCid,
            outcome.acceptedBitmap,
            outcome.rewardsRoot,
            outcome.rewardTotal,
            stake,
            rd.stakeAtOpen
        );
        // Exactly what the tree pays is reserved, so `rewardsOutstanding` is always claimable.
        _move(Ledger.Pool, Ledger.Budget, address(0), round, outcome.rewardTotal);
        _openRound(round + 1, round);
    }

    /// @inheritdoc ISwarmCoordinator
    function failRound(uint64 round) external {
        Round storage rd = _requireCurrent(round);
        (,, uint64 attestEnd) = _deadlines(rd);
        if (block.timestamp < attestEnd) revert RoundNotExpired(round, attestEnd, block.timestamp);
        uint256 required = _requiredStake(rd.stakeAtOpen);
        if (rd.leadingStake >= required) revert QuorumReached(round, rd.leadingStake, required);

        rd.status = RoundStatus.Failed;
        emit RoundFailed(round, msg.sender, rd.baseRound, rd.leadingStake, required);
        _openRound(round + 1, rd.baseRound);
    }

    /// @inheritdoc ISwarmCoordinator
    function slash(uint64 round, address node) external {
        RoundStatus status = _rounds[round].status;
        if (status != RoundStatus.Finalized && status != RoundStatus.Failed) revert RoundNotClosed(round, status);
        if (_submissions[round][node] == SLASHED) revert AlreadySlashed(round, node);
        Member storage m = _members[node];
        (SubmissionState state, bool due, SlashReason reason) = _offence(round, node, m.index);
        if (!due) revert NotSlashable(round, node, state);
        _slash(round, node, m, reason);
    }

    /// @inheritdoc ISwarmCoordinator
    function slashRejected(uint64 round, address node, Outcome[] calldata tuples) external {
        Round storage rd = _rounds[round];
        if (rd.status != RoundStatus.Failed) revert RoundNotFailed(round, rd.status);
        bytes32 stored = _submissions[round][node];
        if (stored == SLASHED) revert AlreadySlashed(round, node);
        if (stored != REVEALED) revert NotSlashable(round, node, _stateOf(stored));
        Member storage m = _members[node];
        uint32 index = m.index;

        uint256 stake = 0;
        bytes32 previous = bytes32(0);
        for (uint256 i = 0; i < tuples.length; ++i) {
            bytes32 key = SwarmHashes.outcomeKey(tuples[i]);
            // Strictly increasing keys: no tuple, and so no attester's stake, counts twice.
            if (uint256(key) <= uint256(previous)) revert TuplesNotSorted(i, key, previous);
            uint256 attested = outcomeStake[round][key];
            if (attested == 0) revert TupleNotAttested(round, key);
            if (tuples[i].acceptedBitmap.contains(index)) revert TupleAcceptsNode(round, key, node, index);
            // Unchecked: distinct keys have disjoint attesters, so stake <= stakeAtOpen < 2**128.
            unchecked {
                stake += attested;
            }
            previous = key;
        }
        uint256 required = _requiredStake(rd.stakeAtOpen);
        if (stake < required) revert RejectionBelowQuorum(round, node, stake, required);
        _slash(round, node, m, SlashReason.Rejected);
    }

    /// @inheritdoc ISwarmCoordinator
    function claim(uint64 round, address account, uint256 amount, bytes32[] calldata proof) external {
        if (amount == 0) revert ZeroAmount();
        Round storage rd = _rounds[round];
        if (rd.status != RoundStatus.Finalized) revert RoundNotFinalized(round, rd.status);
        if (claimed[round][account]) revert AlreadyClaimed(round, account);
        bytes32 leaf = SwarmHashes.rewardLeaf(account, amount);
        if (!MerkleProof.verifyCalldata(proof, _outcomes[round].rewardsRoot, leaf)) {
            revert InvalidProof(round, account, amount);
        }
        if (amount > rd.rewardRemaining) revert RewardBudgetExceeded(round, amount, rd.rewardRemaining);

        claimed[round][account] = true;
        emit Claimed(round, account, amount);
        _move(Ledger.Budget, Ledger.Account, account, round, amount);
    }

    // ------------------------------------------------------------------------------------------
    // VIEWS
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc ISwarmCoordinator
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc ISwarmCoordinator
    function params() external view returns (Params memory) {
        return Params({
            quorumBps: _quorumBps,
            slashBps: _slashBps,
            commitDuration: _commitDuration,
            revealDuration: _revealDuration,
            attestDuration: _attestDuration,
            unbondingDelay: _unbondingDelay,
            minStake: _minStake,
            rewardPerRound: _rewardPerRound
        });
    }

    /// @inheritdoc ISwarmCoordinator
    function roundInfo(uint64 round) external view returns (RoundInfo memory info) {
        Round storage rd = _requireKnown(round);
        (uint64 commitEnd, uint64 revealEnd, uint64 attestEnd) = _deadlines(rd);
        info.status = rd.status;
        info.phase = rd.status == RoundStatus.Open
            ? RoundClock.phaseAt(commitEnd, revealEnd, attestEnd, block.timestamp)
            : Phase.Ended;
        info.baseRound = rd.baseRound;
        info.openedAt = rd.openedAt;
        info.commitDeadline = commitEnd;
        info.revealDeadline = revealEnd;
        info.attestDeadline = attestEnd;
        info.activeAtOpen = rd.activeAtOpen;
        info.commits = rd.commits;
        info.reveals = rd.reveals;
        info.attests = rd.attests;
        info.stakeAtOpen = rd.stakeAtOpen;
        info.requiredStake = _requiredStake(rd.stakeAtOpen);
        info.leadingStake = rd.leadingStake;
        info.rewardRemaining = rd.rewardRemaining;
        info.seed = _seed(round, rd);
    }

    /// @inheritdoc ISwarmCoordinator
    function roundSeed(uint64 round) external view returns (bytes32) {
        return _seed(round, _requireKnown(round));
    }

    /// @inheritdoc ISwarmCoordinator
    function finalizedOutcome(uint64 round) external view returns (Outcome memory) {
        RoundStatus status = _rounds[round].status;
        if (status != RoundStatus.Finalized) revert RoundNotFinalized(round, status);
        return _outcomes[round];
    }

    /// @inheritdoc ISwarmCoordinator
    function submission(uint64 round, address node) external view returns (SubmissionState, bytes32) {
        bytes32 stored = _submissions[round][node];
        SubmissionState state = _stateOf(stored);
        return (state, state == SubmissionState.Committed ? stored : bytes32(0));
    }

    /// @inheritdoc ISwarmCoordinator
    function memberInfo(address node) external view returns (MemberInfo memory) {
        Member storage m = _members[node];
        return MemberInfo({
            status: m.status,
            registered: m.registered,
            index: m.index,
            stake: m.stake,
            stakeAtOpen: _stakeAtOpen(m),
            unbondingEnds: m.unbondingEnds,
            lastCommitRound: m.lastCommitRound,
            lastAttestRound: m.lastAttestRound,
            ed25519Key: m.ed25519Key,
            x25519Key: m.x25519Key
        });
    }

    /// @inheritdoc ISwarmCoordinator
    function commitmentOf(
        string calldata cid,
        bytes32 contentHash,
        uint64 numSamples,
        bytes32 salt,
        address node,
        uint64 round
    ) external view returns (bytes32) {
        return SwarmHashes.commitment(cid, contentHash, numSamples, salt, node, round, address(this));
    }

    /// @inheritdoc ISwarmCoordinator
    function outcomeKeyOf(Outcome calldata outcome) external pure returns (bytes32) {
        return SwarmHashes.outcomeKey(outcome);
    }

    // ------------------------------------------------------------------------------------------
    // INTERNAL LOGIC
    // ------------------------------------------------------------------------------------------

    /// @dev The one place token balances change (OpenZeppelin `ERC20._update` style): debit one
    ///      ledger, credit another, and make the single token call last (checks-effects-
    ///      interactions). `account` names the member (Stake) or the wallet (Account); `round`
    ///      names the budget (Budget).
    function _move(Ledger from, Ledger to, address account, uint64 round, uint256 amount) private {
        if (from == Ledger.Stake) {
            Member storage m = _members[account];
            _checkpoint(m);
            m.stake -= amount.toUint128();
            totalStaked -= amount;
            if (m.status == MemberStatus.Active) activeStake -= amount;
        } else if (from == Ledger.Pool) {
            rewardPool -= amount;
        } else if (from == Ledger.Budget) {
            _rounds[round].rewardRemaining -= amount.toUint128();
            rewardsOutstanding -= amount;
        }
        if (to == Ledger.Stake) {
            Member storage m = _members[account];
            _checkpoint(m);
            m.stake += amount.toUint128();
            totalStaked += amount;
            if (m.status == MemberStatus.Active) activeStake += amount;
        } else if (to == Ledger.Pool) {
            rewardPool += amount;
        } else if (to == Ledger.Budget) {
            _rounds[round].rewardRemaining += amount.toUint128();
            rewardsOutstanding += amount;
        }
        if (from == Ledger.Account) {
            _token.safeTransferFrom(account, address(this), amount);
        } else if (to == Ledger.Account) {
            _token.safeTransfer(account, amount);
        }
    }

    /// @dev Change a member's status, keeping the active totals and the member's checkpoint right.
    function _setStatus(Member storage m, MemberStatus status) private {
        _checkpoint(m);
        if (m.status == MemberStatus.Active) {
            activeStake -= m.stake;
            activeMembers -= 1;
        }
        if (status == MemberStatus.Active) {
            activeStake += m.stake;
            activeMembers += 1;
        }
        m.status = status;
    }

    /// @dev Before the first change to a member in a round, remember what it held at the open.
    function _checkpoint(Member storage m) private {
        uint64 round = currentRound;
        if (m.checkpointRound != round) {
            m.stakeAtOpen = m.status == MemberStatus.Active ? m.stake : 0;
            m.checkpointRound = round;
        }
    }

    /// @dev The member's stake counted in the current round (what it held active at the open).
    function _stakeAtOpen(Member storage m) private view returns (uint256) {
        if (m.checkpointRound == currentRound) return m.stakeAtOpen;
        return m.status == MemberStatus.Active ? m.stake : 0;
    }

    /// @dev Leave the active set; the stake stays escrowed for the unbonding delay.
    function _beginUnbonding(address node, Member storage m, bool forced) private {
        _setStatus(m, MemberStatus.Exiting);
        uint64 ends = uint64(block.timestamp) + _unbondingDelay;
        m.unbondingEnds = ends;
        emit ExitRequested(currentRound, node, m.stake, ends, forced);
    }

    /// @dev Apply the slash due for the member's last committed round, if that round is closed.
    function _settle(address node, Member storage m) private {
        uint64 round = m.lastCommitRound;
        if (round == 0 || round == currentRound) return;
        (, bool due, SlashReason reason) = _offence(round, node, m.index);
        if (due) _slash(round, node, m, reason);
    }

    /// @dev What `node` did in closed-or-open `round`, and whether a slash is due for it.
    function _offence(uint64 round, address node, uint32 index)
        private
        view
        returns (SubmissionState state, bool due, SlashReason reason)
    {
        state = _stateOf(_submissions[round][node]);
        RoundStatus status = _rounds[round].status;
        if (state == SubmissionState.Committed) {
            due = status == RoundStatus.Finalized || status == RoundStatus.Failed;
            reason = SlashReason.NotRevealed;
        } else if (state == SubmissionState.Revealed) {
            // In a failed round no bitmap is final: `slashRejected` proves a rejection instead.
            due = status == RoundStatus.Finalized && !_outcomes[round].acceptedBitmap.contains(index);
            reason = SlashReason.Rejected;
        }
    }

    /// @dev Move `slashBps` of the member's stake to the pool; exit a member left below minimum.
    function _slash(uint64 round, address node, Member storage m, SlashReason reason) private {
        uint256 amount = uint256(m.stake) * _slashBps / BPS;
        _submissions[round][node] = SLASHED;
        emit Slashed(round, node, reason, amount, m.stake - amount);
        _move(Ledger.Stake, Ledger.Pool, node, 0, amount);
        if (m.status == MemberStatus.Active && m.stake < _minStake) _beginUnbonding(node, m, true);
    }

    /// @dev Open `round` from the checkpoint of `baseRound`, snapshotting the active stake.
    function _openRound(uint64 round, uint64 baseRound) private {
        currentRound = round;
        Round storage rd = _rounds[round];
        rd.openedAt = uint40(block.timestamp);
        rd.stakeAtOpen = activeStake.toUint128();
        rd.activeAtOpen = activeMembers;
        rd.baseRound = baseRound;
        rd.status = RoundStatus.Open;
        (uint64 commitEnd,,) = _deadlines(rd);
        emit RoundOpened(
            round,
            baseRound,
            _outcomes[baseRound].checkpointHash,
            _seed(round, rd),
            rd.stakeAtOpen,
            rd.activeAtOpen,
            commitEnd
        );
    }

    function _deadlines(Round storage rd) private view returns (uint64, uint64, uint64) {
        RoundClock.Clock memory clock = RoundClock.Clock({
            openedAt: rd.openedAt,
            commitClosedAt: rd.commitClosedAt,
            revealClosedAt: rd.revealClosedAt,
            attestClosedAt: rd.attestClosedAt,
            activeAtOpen: rd.activeAtOpen,
            commits: rd.commits,
            reveals: rd.reveals,
            attests: rd.attests
        });
        return RoundClock.deadlines(clock, _commitDuration, _revealDuration, _attestDuration);
    }

    function _seed(uint64 round, Round storage rd) private view returns (bytes32) {
        uint64 base = rd.baseRound;
        return SwarmHashes.roundSeed(address(this), round, base, _outcomes[base].checkpointHash, rd.openedAt);
    }

    /// @dev A reward total the round can reserve now: at most min(rewardPool, rewardPerRound).
    function _requireAffordable(uint64 round, uint256 rewardTotal) private view {
        uint256 available = rewardPool < _rewardPerRound ? rewardPool : _rewardPerRound;
        if (rewardTotal > available) revert RewardTotalTooHigh(round, rewardTotal, available);
    }

    /// @dev ceil(stakeAtOpen * quorumBps / 10000), and at least 1 so an empty round never finalizes.
    function _requiredStake(uint256 stakeAtOpen) private view returns (uint256) {
        // Cannot overflow: stakeAtOpen < 2**128 and quorumBps <= 10000.
        uint256 required = (stakeAtOpen * _quorumBps + BPS - 1) / BPS;
        return required == 0 ? 1 : required;
    }

    function _stateOf(bytes32 stored) private pure returns (SubmissionState) {
        if (stored == bytes32(0)) return SubmissionState.None;
        if (stored == REVEALED) return SubmissionState.Revealed;
        if (stored == SLASHED) return SubmissionState.Slashed;
        return SubmissionState.Committed;
    }

    function _requireBitmap(bytes calldata bitmap) private view {
        uint256 maxBitmap = MemberBitmap.maxLength(memberCount);
        if (bitmap.length > maxBitmap) revert BitmapTooLong(bitmap.length, maxBitmap);
    }

    function _requireCid(string calldata cid) private pure {
        uint256 length = bytes(cid).length;
        if (length == 0 || length > MAX_CID_LENGTH) revert InvalidCid(length, MAX_CID_LENGTH);
    }

    function _requireKnown(uint64 round) private view returns (Round storage) {
        if (round == 0 || round > currentRound) revert UnknownRound(round);
        return _rounds[round];
    }

    function _requireCurrent(uint64 round) private view returns (Round storage) {
        if (round != currentRound) {
            if (_rounds[round].status == RoundStatus.Finalized) revert RoundAlreadyFinalized(round);
            revert WrongRound(round, currentRound);
        }
        return _rounds[round];
    }

    /// @dev The current round, with `phase` open at this block's timestamp.
    function _requirePhase(uint64 round, Phase phase) private view returns (Round storage rd) {
        if (round != currentRound) revert WrongRound(round, currentRound);
        rd = _rounds[round];
        (uint64 commitEnd, uint64 revealEnd, uint64 attestEnd) = _deadlines(rd);
        (uint256 start, uint256 end) = phase == Phase.Commit
            ? (uint256(rd.openedAt), uint256(commitEnd))
            : phase == Phase.Reveal ? (uint256(commitEnd), uint256(revealEnd)) : (uint256(revealEnd), uint256(attestEnd));
        if (block.timestamp < start) revert PhaseNotStarted(round, phase, start, block.timestamp);
        if (block.timestamp >= end) revert DeadlinePassed(round, phase, end, block.timestamp);
    }

    /// @dev A member (active or exiting) that held stake when `round` opened.
    function _requireMember(uint64 round, address node) private view returns (Member storage m) {
        m = _members[node];
        if (m.status == MemberStatus.None) revert NotMember(node);
        if (_stakeAtOpen(m) == 0) revert NotEligible(round, node);
    }
}
