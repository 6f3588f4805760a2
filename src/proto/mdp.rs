//! 7/MDP (Majordomo 0.1) and 18/MDP (0.2) client and worker codecs.
