//! How the fabrics' cluster watches spread over the server processes that share one PostgreSQL
//! database: each process takes free watches up to its fair share and lets go of those beyond it,
//! so with N processes and F fabrics none watches more than ceil(F/N), a process that joins gets
//! what the others let go of, and one that leaves hands its own to the survivors. A process never
//! lets go below its share, nor takes above it: nothing moves back and forth.

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
    Spread { take: share.saturating_sub(held), release: held.saturating_sub(share) }
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
        assert_eq!(holdings, [50, 50]);
        // Two fabrics: the newcomer gets one.
        let mut holdings = [2, 0];
        settle(2, &mut holdings);
        assert_eq!(holdings, [1, 1]);
    }

    #[test]
    fn a_process_joining_balanced_ones_gets_watches() {
        let mut holdings = [5, 5, 0];
        settle(10, &mut holdings);
        assert_eq!(holdings, [4, 4, 2]);
        let mut holdings = [34, 33, 33, 0];
        settle(100, &mut holdings);
        assert!(holdings[3] >= 16 && holdings.iter().all(|&h| h <= 25), "{holdings:?}");
    }

    #[test]
    fn no_process_holds_more_than_its_share_and_every_fabric_is_watched() {
        for wanted in [1, 2, 9, 10, 100, 101] {
            for processes in 1..=5 {
                let mut holdings = vec![0; processes];
                holdings[0] = wanted;
                settle(wanted, &mut holdings);
                let share = wanted.div_ceil(processes);
                assert!(holdings.iter().all(|&h| h <= share), "{wanted} over {processes}: {holdings:?}");
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
