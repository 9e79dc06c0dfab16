//! Settings and where they live: the data dir, `config.env`, environment variables, flags and the
//! OS keyring. Loaded once by `cli` and passed down by reference; there is no global config.
//! Must not import adapters or the runtime.

pub mod env_file;
pub mod keys;
pub mod load;
pub mod paths;
pub mod programs;
pub mod runners;
pub mod secrets;
pub mod validate;

pub use env_file::EnvFile;
pub use load::{Env, Layers, Settings, Source};
pub use paths::DataDir;
pub use secrets::{Keyring, Secret};

/// Everything a command needs to know about its configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub data_dir: DataDir,
    pub env: Env,
    pub file: EnvFile,
    pub settings: Settings,
}

impl Loaded {
    /// Reads config.env (if any) and resolves every setting against `flags` and `env`.
    pub fn load(
        data_dir: DataDir,
        env: Env,
        flags: &[(String, String)],
    ) -> Result<Self, env_file::EnvFileError> {
        let file = EnvFile::load(&data_dir.config_env())?;
        let keyring = Keyring::for_data_dir(data_dir.root());
        let settings = Settings::resolve(&Layers {
            flags,
            env: &env,
            file: &file,
            keyring: Some(&keyring),
        });
        Ok(Self {
            data_dir,
            env,
            file,
            settings,
        })
    }
}
