//! The admin client: topics, partitions, configs, groups, offsets and the cluster.
