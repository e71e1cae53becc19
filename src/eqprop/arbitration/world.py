"""A grid world for navigation with a goal that can move and corridors that can close.

The world of Dromnelle et al. 2020/2022 is a graph of discrete states abstracted from a robot's
map, with 8 movement actions; reaching the goal gives reward 1 and puts the robot back at its
start. :class:`GridWorld` builds such a graph from a text layout: every free cell is a state,
``'#'`` is a wall, ``'S'`` the start and ``'G'`` the goal. A move into a wall (or a diagonal that
would cut a wall's corner) leaves the state unchanged; with probability ``slip`` the executed
action is drawn uniformly at random instead of the chosen one (stochastic transitions).

Non-stationarity: :meth:`GridWorld.move_goal` puts the reward elsewhere and
:meth:`GridWorld.close` walls a cell in (a corridor closes, a dead end appears). A world whose
goal cannot be reached from the start is refused, at construction and after every change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigurationError

__all__ = ["GridWorld", "TWO_ROOMS", "MOVES_4", "MOVES_8"]

#: Two rooms joined by a short corridor (the top door, (1, 4): 6 steps from S to G) and a longer
#: one (the bottom door, (4, 4): 8 steps), with a dead end hanging below the left room; 28 states.
TWO_ROOMS = (
    "#########",
    "#S.....G#",
    "#...#...#",
    "#...#...#",
    "#.......#",
    "##.######",
    "##.######",
    "#########",
)

MOVES_4 = ((-1, 0), (0, 1), (1, 0), (0, -1))  # N, E, S, W
MOVES_8 = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # N, NE, ..., NW

Cell = tuple[int, int]


class GridWorld:
    """A grid navigation MDP: states are the free cells, reward 1 on entering the goal.

    Args:
        layout: rows of equal length; ``'#'`` wall, ``'.'`` free, ``'S'`` start, ``'G'`` goal
            (exactly one of each of the last two).
        slip: probability that the executed action is uniformly random, in [0, 1).
        moves: 8 (the paper's movement actions, diagonals included) or 4.

    ``step(state, action, rng)`` returns ``(next_state, reward, done)``; ``done`` means the
    goal was entered and the episode ends (the caller puts the agent back at :attr:`start`).
    """

    def __init__(self, layout: Sequence[str], *, slip: float = 0.0, moves: int = 8) -> None:
        if isinstance(layout, str) or len(layout) == 0:
            raise ConfigurationError("layout must be a non-empty list of strings (one per row), e.g. ['#S.G#'].")
        rows = [str(row) for row in layout]
        if len({len(row) for row in rows}) != 1:
            raise ConfigurationError(f"every row of the layout must have the same length, got lengths {[len(r) for r in rows]}.")
        unknown = set("".join(rows)) - set("#.SG")
        if unknown:
            raise ConfigurationError(f"layout characters must be '#', '.', 'S' or 'G', got {sorted(unknown)}.")
        for mark, name in (("S", "start"), ("G", "goal")):
            count = sum(row.count(mark) for row in rows)
            if count != 1:
                raise ConfigurationError(f"the layout needs exactly one '{mark}' ({name}), found {count}.")
        if moves not in (4, 8):
            raise ConfigurationError(f"moves must be 4 or 8, got {moves!r}.")
        slip = float(slip)
        if not 0.0 <= slip < 1.0:
            raise ConfigurationError(f"slip must be a probability in [0, 1), got {slip}.")
        self.slip = slip
        self.moves = MOVES_8 if moves == 8 else MOVES_4
        self.shape = (len(rows), len(rows[0]))
        self.cells: list[Cell] = [(i, j) for i, row in enumerate(rows) for j, c in enumerate(row) if c != "#"]
        self._index = {cell: k for k, cell in enumerate(self.cells)}
        self._open = np.ones(len(self.cells), dtype=bool)
        self.start = next(self._index[(i, j)] for i, row in enumerate(rows) for j, c in enumerate(row) if c == "S")
        self.goal = next(self._index[(i, j)] for i, row in enumerate(rows) for j, c in enumerate(row) if c == "G")
        self._rebuild()
        self._check_reachable()

    # --- structure -------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return len(self.cells)

    @property
    def n_actions(self) -> int:
        return len(self.moves)

    def state(self, cell: Cell | int) -> int:
        """The state index of a cell ``(row, column)`` (an int is taken as a state index)."""
        if isinstance(cell, (int, np.integer)):
            if not 0 <= int(cell) < self.n_states:
                raise ConfigurationError(f"state {cell} does not exist: this world has states 0..{self.n_states - 1}.")
            return int(cell)
        cell = tuple(int(v) for v in cell)  # type: ignore[assignment]
        if cell not in self._index:
            raise ConfigurationError(f"cell {cell} is a wall or outside the {self.shape} grid; pick a free cell.")
        return self._index[cell]  # type: ignore[index]

    def _move(self, s: int, a: int) -> int:
        i, j = self.cells[s]
        di, dj = self.moves[a]
        target = (i + di, j + dj)
        if not self._free(target):
            return s
        if di != 0 and dj != 0 and not (self._free((i + di, j)) and self._free((i, j + dj))):
            return s  # a diagonal may not cut a wall's corner
        return self._index[target]

    def _free(self, cell: Cell) -> bool:
        k = self._index.get(cell)
        return k is not None and bool(self._open[k])

    def _rebuild(self) -> None:
        S, A = self.n_states, self.n_actions
        self._next = np.array([[self._move(s, a) for a in range(A)] for s in range(S)], dtype=np.int64)
        P = np.zeros((S, A, S))
        P[np.arange(S)[:, None], np.arange(A)[None, :], self._next] = 1.0 - self.slip
        for s in range(S):
            for b in range(A):
                P[s, :, self._next[s, b]] += self.slip / A
        self._P = P

    def transition_matrix(self) -> np.ndarray:
        """The true dynamics P[s, a, s'] (each row sums to 1); the goal is not absorbing here."""
        return self._P.copy()

    def distances(self) -> np.ndarray:
        """Steps from every state to the goal along open moves (``inf`` where unreachable)."""
        dist = np.full(self.n_states, np.inf)
        dist[self.goal] = 0
        queue = deque([self.goal])
        while queue:  # breadth-first search on the reversed move graph
            g = queue.popleft()
            for s in range(self.n_states):
                if self._open[s] and np.isinf(dist[s]) and (self._next[s] == g).any():
                    dist[s] = dist[g] + 1
                    queue.append(s)
        return dist

    def _check_reachable(self) -> None:
        if np.isinf(self.distances()[self.start]):
            raise ConfigurationError(
                f"the goal {self.cells[self.goal]} cannot be reached from the start {self.cells[self.start]}; "
                "open a path between them or move the goal."
            )

    # --- non-stationarity ------------------------------------------------------------------
    def move_goal(self, cell: Cell | int) -> None:
        """Put the reward at another free cell (refused if it cannot be reached from the start)."""
        new = self.state(cell)
        if not self._open[new]:
            raise ConfigurationError(f"cell {self.cells[new]} is closed; the goal must be an open cell.")
        if new == self.start:
            raise ConfigurationError(f"cell {self.cells[new]} is the start; put the goal on another cell.")
        old, self.goal = self.goal, new
        try:
            self._check_reachable()
        except ConfigurationError:
            self.goal = old
            raise

    def close(self, cell: Cell | int) -> None:
        """Wall a free cell in: moves into it fail from now on (a corridor closes).

        Refused for the start and the goal, and when the goal would become unreachable.
        """
        s = self.state(cell)
        if s in (self.start, self.goal):
            raise ConfigurationError(f"cell {self.cells[s]} is the start or the goal and cannot be closed; close a corridor cell.")
        self._open[s] = False
        self._rebuild()
        try:
            self._check_reachable()
        except ConfigurationError:
            self._open[s] = True
            self._rebuild()
            raise

    # --- dynamics --------------------------------------------------------------------------
    def step(self, state: int, action: int, rng: np.random.Generator) -> tuple[int, float, bool]:
        """One transition: ``(next_state, reward, done)``, reward 1 and done on entering the goal."""
        if self.slip > 0.0 and rng.random() < self.slip:
            action = int(rng.integers(self.n_actions))
        nxt = int(self._next[state, action])
        done = nxt == self.goal
        return nxt, float(done), done

    def render(self) -> str:
        """The current layout as text (closed cells shown as walls)."""
        grid = [["#"] * self.shape[1] for _ in range(self.shape[0])]
        for k, (i, j) in enumerate(self.cells):
            grid[i][j] = "." if self._open[k] else "#"
        for k, mark in ((self.start, "S"), (self.goal, "G")):
            i, j = self.cells[k]
            grid[i][j] = mark
        return "\n".join("".join(row) for row in grid)
