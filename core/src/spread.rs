//! How the fabrics' cluster watches spread over the server processes that share one PostgreSQL:
//! each process takes up to its fair share and lets go of what is beyond one more, so with N
//! processes and F fabrics none watches more than ceil(F/N) + 1, and a process that joins takes
//! watches from the others while one that leaves hands its own to the survivors.

/// What a process does with its watches in one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Free watches to take, at most.
    pub take: usize,
    /// Watches to let go of.
    pub release: usize,
}

/// `wanted`: fabrics to watch; `processes`: live processes, this one included; `held`: the
/// watches this one holds.
pub fn spread(wanted: usize, processes: usize, held: usize) -> Spread {
    let share = wanted.div_ceil(processes.max(1));
    // One above the share is kept: letting go of it would only move it back and forth.
    Spread { take: share.saturating_sub(held), release: held.saturating_sub(share + 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes that scan in turn, each taking free watches and letting go as `spread` says.
    fn settle(wanted: usize, holdings: &mut [usize]) {
        for _ in 0..10 {
            for i in 0..holdings.len() {
                let plan = spread(wanted, holdings.len(), holdings[i]);
                holdings[i] -= plan.release;
                let free = wanted - holdings.iter().sum::<usize>();
                holdings[i] += plan.take.min(free);
            }
        }
    }

    #[test]
    fn one_process_watches_everything_and_a_second_one_takes_half() {
        let mut holdings = [0];
        settle(100, &mut holdings);
        assert_eq!(holdings, [100]);
        let mut holdings = [100, 0];
        settle(100, &mut holdings);
        assert_eq!(holdings, [51, 49]);
    }

    #[test]
    fn no_process_holds_more_than_its_share_and_one_and_every_fabric_is_watched() {
        for wanted in [1, 2, 9, 10, 100, 101] {
            for processes in 1..=5 {
                let mut holdings = vec![0; processes];
                holdings[0] = wanted;
                settle(wanted, &mut holdings);
                let share = wanted.div_ceil(processes);
                assert!(holdings.iter().all(|&h| h <= share + 1), "{wanted} over {processes}: {holdings:?}");
                assert_eq!(holdings.iter().sum::<usize>(), wanted, "{wanted} over {processes}: {holdings:?}");
                // One leaves: the survivors watch its fabrics too.
                let mut survivors = holdings[1..].to_vec();
                if !survivors.is_empty() {
                    settle(wanted, &mut survivors);
                    assert_eq!(survivors.iter().sum::<usize>(), wanted, "{wanted} after one of {processes} left");
                }
            }
        }
    }

    #[test]
    fn without_a_count_of_processes_it_acts_as_the_only_one() {
        assert_eq!(spread(7, 0, 3), Spread { take: 4, release: 0 });
    }
}
